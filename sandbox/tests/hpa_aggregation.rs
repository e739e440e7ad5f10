//! The HPA controller reading an External metric THROUGH the sandbox's aggregation layer, as
//! kube-controller-manager does: an APIService `v1beta1.external.metrics.k8s.io` points at a
//! Service whose Endpoints are a local HTTPS adapter; the controller's GET goes to the sandbox
//! router, which proxies it over TLS with the front-proxy client certificate and `X-Remote-*`
//! headers (`spec/kubernetes.md` §1.1, §2.3).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Extension, Request};
use axum::response::IntoResponse;
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use jiff::Timestamp;
use serde_json::{Value, json};
use tidescale_sandbox::api::{ApiState, router};
use tidescale_sandbox::auth::Authenticator;
use tidescale_sandbox::clock::ClockHandle;
use tidescale_sandbox::controllers::{ControllerConfig, Controllers, RouterMetrics};
use tidescale_sandbox::pki::{Authority, Pki, Usage, provider};
use tidescale_sandbox::{GroupResource, Sandbox, SandboxConfig, Store, UserInfo, WriteOptions};
use tokio_util::sync::CancellationToken;

/// What the fake adapter saw: (path and query, X-Remote-User, client certificate CN).
type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// Common name of the verified client certificate of a connection.
#[derive(Debug, Clone, Default)]
struct PeerCn(String);

fn common_name(der: &[u8]) -> String {
    x509_parser::parse_x509_certificate(der)
        .ok()
        .and_then(|(_, cert)| {
            cert.subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// Accepts TLS connections and serves `app` on them, tagging requests with the peer's CN.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    app: axum::Router,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(stream).await else {
                return;
            };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| common_name(c))
                .unwrap_or_default();
            let service = TowerToHyperService::new(app.layer(Extension(PeerCn(cn))));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

/// A minimal external metrics adapter: discovery plus one metric worth 35.
fn adapter(seen: Seen) -> axum::Router {
    axum::Router::new().fallback(move |Extension(peer): Extension<PeerCn>, req: Request| {
        let seen = seen.clone();
        async move {
            let path = req.uri().path_and_query().map(ToString::to_string).unwrap_or_default();
            let user = req.headers().get("x-remote-user").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
            seen.lock().unwrap().push((path, user, peer.0));
            let body = if req.uri().path() == "/apis/external.metrics.k8s.io/v1beta1" {
                json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "external.metrics.k8s.io/v1beta1",
                       "resources": [{"name": "queue_depth", "singularName": "", "namespaced": true,
                                      "kind": "ExternalMetricValueList", "verbs": ["get"]}]})
            } else {
                json!({"kind": "ExternalMetricValueList", "apiVersion": "external.metrics.k8s.io/v1beta1", "metadata": {},
                       "items": [{"metricName": "queue_depth", "metricLabels": {"queue": "orders"},
                                  "timestamp": "2024-05-01T12:00:00Z", "value": "35"}]})
            };
            ([(http::header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
    })
}

/// Serves the adapter over TLS with a certificate for `adapter.default.svc`, asking for (and
/// verifying) front-proxy client certificates. Returns the port and the CA bundle.
async fn serve_adapter(pki: &Pki, seen: Seen) -> (u16, String, tokio::task::JoinHandle<()>) {
    let ca = Authority::new("adapter-ca").unwrap();
    let cert = ca
        .issue(
            "adapter",
            &[],
            &["adapter.default.svc"],
            &[IpAddr::V4(Ipv4Addr::LOCALHOST)],
            Usage::Server,
        )
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.front_proxy_ca.cert_der.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![cert.cert_der.clone()], cert.private_key())
        .unwrap();
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0))
            .await
            .unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let task = tokio::spawn(serve_tls(listener, acceptor, adapter(seen)));
    (
        port,
        base64::engine::general_purpose::STANDARD.encode(&ca.cert_pem),
        task,
    )
}

fn gr(group: &str, resource: &str) -> GroupResource {
    GroupResource::new(group, resource)
}

fn create(store: &Store, group: &str, resource: &str, obj: Value) {
    store
        .create(&gr(group, resource), obj, &WriteOptions::default())
        .unwrap();
}

fn register_adapter(store: &Store, port: u16, ca_bundle: &str) {
    create(
        store,
        "",
        "services",
        json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "adapter", "namespace": "default"},
        "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
    );
    create(
        store,
        "",
        "endpoints",
        json!({"apiVersion": "v1", "kind": "Endpoints",
        "metadata": {"name": "adapter", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
    );
    create(
        store,
        "apiregistration.k8s.io",
        "apiservices",
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": "v1beta1.external.metrics.k8s.io"},
        "spec": {"service": {"namespace": "default", "name": "adapter", "port": 443},
                 "group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle,
                 "groupPriorityMinimum": 100, "versionPriority": 100}}),
    );
}

async fn wait_available(store: &Store) {
    for _ in 0..200 {
        let svc = store
            .get(
                &gr("apiregistration.k8s.io", "apiservices"),
                None,
                "v1beta1.external.metrics.k8s.io",
            )
            .unwrap();
        let available = svc
            .pointer("/status/conditions")
            .and_then(Value::as_array)
            .is_some_and(|l| {
                l.iter()
                    .any(|c| c["type"] == "Available" && c["status"] == "True")
            });
        if available {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the APIService never became Available: is the sandbox's availability loop probing the adapter?"
    );
}

fn create_workload(store: &Store) {
    create(
        store,
        "apps",
        "deployments",
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "worker", "namespace": "default"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "worker"}},
                 "template": {"metadata": {"labels": {"app": "worker"}}, "spec": {"containers": [{"name": "app", "image": "x"}]}}}}),
    );
    create(
        store,
        "autoscaling",
        "horizontalpodautoscalers",
        json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "worker", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
                 "minReplicas": 1, "maxReplicas": 20,
                 "metrics": [{"type": "External", "external": {
                     "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "orders"}}},
                     "target": {"type": "AverageValue", "averageValue": "10"}}}]}}),
    );
}

/// The sandbox's HTTP state over `store`, and a token for the HPA controller's identity.
fn api_state(store: &Arc<Store>, shutdown: &CancellationToken) -> (ApiState, String) {
    let auth = Arc::new(Authenticator::default());
    let hpa_user = UserInfo::new(
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
        &["system:masters"],
    );
    let token = auth.issue_token(hpa_user);
    let state = ApiState {
        store: store.clone(),
        auth,
        pki: Arc::new(Pki::generate(&[]).unwrap()),
        server_address: "127.0.0.1:6443".to_owned(),
        bookmark_interval: Duration::from_secs(60),
        shutdown: shutdown.clone(),
    };
    (state, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_reads_external_metric_through_the_aggregation_proxy() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let (clock, control) = ClockHandle::manual(start);
    let store = Store::new(clock.clone(), 10_000);
    let (state, token) = api_state(&store, &shutdown);
    let pki = state.pki.clone();
    tokio::spawn(tidescale_sandbox::aggregator::availability_loop(
        state.clone(),
        shutdown.clone(),
    ));

    let seen: Seen = Arc::default();
    let (port, ca_bundle, adapter_task) = serve_adapter(&pki, seen.clone()).await;
    register_adapter(&store, port, &ca_bundle);
    wait_available(&store).await;

    let metrics = Arc::new(RouterMetrics::new(router(state), Some(token)));
    Controllers::new(store.clone(), ControllerConfig::default(), Some(metrics))
        .spawn(&clock, shutdown.clone());
    control.settle().await;
    create_workload(&store);
    control.advance(Duration::from_secs(1)).await;

    let deploy = store
        .get(&gr("apps", "deployments"), Some("default"), "worker")
        .unwrap();
    assert_eq!(
        deploy["spec"]["replicas"], 4,
        "ceil(35 / 10) = 4 through the proxy"
    );
    let hpa = store
        .get(
            &gr("autoscaling", "horizontalpodautoscalers"),
            Some("default"),
            "worker",
        )
        .unwrap();
    assert_eq!(
        hpa["status"]["currentMetrics"][0]["external"]["current"]["averageValue"],
        "35"
    );
    let seen = seen.lock().unwrap().clone();
    let read = seen
        .iter()
        .find(|(path, _, _)| path.contains("/namespaces/default/queue_depth"))
        .expect("metric read reached the adapter");
    assert_eq!(
        read.0,
        "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/queue_depth?labelSelector=queue%3Dorders"
    );
    assert_eq!(
        read.1,
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(read.2, "front-proxy-client");
    adapter_task.abort();
}

/// The same story against a whole running sandbox: the controllers reach it over HTTPS like a
/// real kube-controller-manager, and the sandbox proxies to the adapter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_reads_external_metric_from_a_running_sandbox_over_https() {
    let shutdown = CancellationToken::new();
    let _stop = shutdown.clone().drop_guard();
    let start: Timestamp = "2024-05-01T12:00:00Z".parse().unwrap();
    let (clock, control) = ClockHandle::manual(start);
    let config = SandboxConfig {
        clock: clock.clone(),
        ..SandboxConfig::default()
    };
    let mut sandbox = Sandbox::start(config).await.unwrap();
    let store = sandbox.store().clone();

    let seen: Seen = Arc::default();
    let (port, ca_bundle, adapter_task) = serve_adapter(sandbox.pki(), seen.clone()).await;
    register_adapter(&store, port, &ca_bundle);
    wait_available(&store).await;

    let controllers = Controllers::for_sandbox(&sandbox, ControllerConfig::default()).unwrap();
    controllers.spawn(&clock, shutdown.clone());
    control.settle().await;
    create_workload(&store);
    control.advance(Duration::from_secs(1)).await;

    let deploy = store
        .get(&gr("apps", "deployments"), Some("default"), "worker")
        .unwrap();
    assert_eq!(deploy["spec"]["replicas"], 4);
    let seen = seen.lock().unwrap().clone();
    let read = seen
        .iter()
        .find(|(path, _, _)| path.contains("/namespaces/default/queue_depth"))
        .expect("metric read reached the adapter");
    assert_eq!(
        read.1,
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(read.2, "front-proxy-client");
    adapter_task.abort();
    sandbox.shutdown().await;
}
