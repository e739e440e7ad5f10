//! The aggregation proxy: an APIService-backed TLS backend receives proxied requests with the
//! front-proxy client certificate and X-Remote headers; 503 once it is gone.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tidescale_sandbox::pki::{Authority, Usage, provider};
use tokio_util::sync::CancellationToken;

/// What the backend saw: client certificate CN, X-Remote-User, X-Remote-Group values, path.
type Seen = Arc<Mutex<Vec<(String, String, Vec<String>, String)>>>;

fn answer(path: &str) -> String {
    if path.ends_with("/v1beta1") {
        return r#"{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"external.metrics.k8s.io/v1beta1","resources":[]}"#.into();
    }
    r#"{"kind":"ExternalMetricValueList","apiVersion":"external.metrics.k8s.io/v1beta1","metadata":{},"items":[{"metricName":"queue","metricLabels":{},"timestamp":"2024-05-01T12:00:00Z","value":"42"}]}"#.into()
}

async fn backend(
    front_proxy_ca: &Authority,
    stop: CancellationToken,
) -> (SocketAddr, String, Seen) {
    let ca = Authority::new("adapter-ca").unwrap();
    let cert = ca
        .issue("adapter", &[], &["adapter.metrics.svc"], &[], Usage::Server)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(front_proxy_ca.cert_der.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = tokio::select! { () = stop.cancelled() => return, a = listener.accept() => a.unwrap() };
            let acceptor = acceptor.clone();
            let record = record.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .cloned()
                    .unwrap();
                let cn = tidescale_sandbox::auth::user_from_certificate(&peer)
                    .unwrap()
                    .name;
                let service =
                    hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let header = |n: &str| {
                            req.headers()
                                .get_all(n)
                                .iter()
                                .map(|v| v.to_str().unwrap().to_owned())
                                .collect::<Vec<_>>()
                        };
                        let user = header("x-remote-user").join(",");
                        record.lock().unwrap().push((
                            cn.clone(),
                            user,
                            header("x-remote-group"),
                            req.uri().path().to_owned(),
                        ));
                        let body = answer(req.uri().path());
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(bytes::Bytes::from(body)))
                                    .unwrap(),
                            )
                        }
                    });
                let conn = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                tokio::select! { _ = conn.serve_connection(TokioIo::new(tls), service) => {}, () = stop.cancelled() => {} }
            });
        }
    });
    (
        addr,
        base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem),
        seen,
    )
}

fn registration(port: u16, ca_bundle: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Namespace
metadata: {{name: metrics}}
---
apiVersion: v1
kind: Service
metadata: {{name: adapter, namespace: metrics}}
spec:
  ports: [{{name: https, port: 443, targetPort: {port}}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: adapter, namespace: metrics}}
subsets:
  - addresses: [{{ip: 127.0.0.1}}]
    ports: [{{name: https, port: {port}}}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {{name: v1beta1.external.metrics.k8s.io}}
spec:
  group: external.metrics.k8s.io
  version: v1beta1
  groupPriorityMinimum: 100
  versionPriority: 100
  caBundle: {ca_bundle}
  service: {{name: adapter, namespace: metrics, port: 443}}
"#
    )
}

#[tokio::test]
async fn aggregated_requests_reach_the_backend_with_front_proxy_identity() {
    let env = common::start().await;
    let stop = CancellationToken::new();
    let (addr, ca_bundle, seen) = backend(&env.sandbox.pki().front_proxy_ca, stop.clone()).await;
    env.apply(&registration(addr.port(), &ca_bundle), &[]).await;
    env.ok(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1beta1.external.metrics.k8s.io",
        "--timeout=20s",
    ])
    .await;
    let raw = env
        .ok(&[
            "get",
            "--raw",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue",
        ])
        .await;
    assert!(raw.contains("\"value\":\"42\""), "{raw}");
    let calls = seen.lock().unwrap().clone();
    let proxied = calls
        .iter()
        .find(|c| c.3.ends_with("/queue"))
        .expect("the backend saw the request");
    assert_eq!(proxied.0, "front-proxy-client");
    assert_eq!(proxied.1, "sandbox-admin");
    assert!(
        proxied.2.contains(&"system:masters".to_owned())
            && proxied.2.contains(&"system:authenticated".to_owned()),
        "{proxied:?}"
    );
    assert!(
        calls.iter().any(|c| c.1 == "system:kube-aggregator"),
        "availability probes identify as the aggregator"
    );
    let groups = env.ok(&["api-versions"]).await;
    assert!(
        groups.contains("external.metrics.k8s.io/v1beta1"),
        "{groups}"
    );

    stop.cancel();
    env.ok(&[
        "wait",
        "--for=condition=Available=False",
        "apiservice/v1beta1.external.metrics.k8s.io",
        "--timeout=20s",
    ])
    .await;
    let down = env
        .kubectl(&[
            "get",
            "--raw",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue",
        ])
        .await;
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(
        stderr.contains("ServiceUnavailable") || stderr.contains("unable to handle the request"),
        "{stderr}"
    );
}

#[tokio::test]
async fn the_authentication_configmap_publishes_the_front_proxy_ca() {
    let env = common::start().await;
    let out = env
        .ok(&[
            "-n",
            "kube-system",
            "get",
            "configmap",
            "extension-apiserver-authentication",
            "-o",
            "json",
        ])
        .await;
    let cm: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        cm["data"]["requestheader-client-ca-file"],
        env.sandbox.pki().front_proxy_ca.cert_pem.as_str()
    );
    assert_eq!(
        cm["data"]["client-ca-file"],
        env.sandbox.pki().client_ca.cert_pem.as_str()
    );
    assert_eq!(
        cm["data"]["requestheader-allowed-names"],
        "[\"front-proxy-client\"]"
    );
    assert_eq!(
        cm["data"]["requestheader-username-headers"],
        "[\"X-Remote-User\"]"
    );
}

#[tokio::test]
async fn built_in_group_versions_are_local_apiservices() {
    let env = common::start().await;
    env.ok(&[
        "wait",
        "--for=condition=Available",
        "apiservice/v1.apps",
        "apiservice/v1",
        "--timeout=20s",
    ])
    .await;
    let reason = env
        .ok(&[
            "get",
            "apiservice",
            "v1.apps",
            "-o",
            "jsonpath={.status.conditions[0].reason}",
        ])
        .await;
    assert_eq!(reason, "Local");
    let groups = env.ok(&["api-versions"]).await;
    assert!(
        groups.contains("apps/v1") && groups.contains("autoscaling/v2"),
        "{groups}"
    );
}
