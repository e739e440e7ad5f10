//! The metrics adapter's security layer against the sandbox control plane: the TLS server,
//! serving certificates (files and self-generated), the authentication chain (front proxy,
//! client certificates, TokenReview, anonymous) and SubjectAccessReview authorization, with
//! real clients (reqwest, rustls, kube) and, at the end, through the sandbox's aggregation
//! proxy exactly as the HPA's requests arrive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Extension;
use axum::http::HeaderMap;
use axum::routing::get;
use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tidescale::adapter::auth_config::AuthConfigCell;
use tidescale::adapter::authn::User;
use tidescale::adapter::authz::{Security, secure};
use tidescale::adapter::certs::{self, Bundle, SelfSigned, ServingCert};
use tidescale::adapter::server::{self, ServerHandle, TlsSettings};
use tidescale_sandbox::pki::{Authority, Usage};
use tidescale_sandbox::{Credentials, Sandbox, SandboxConfig, SandboxHandle, UserInfo};
use tokio_util::sync::CancellationToken;

const METRIC: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/queue";
const HPA: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

/// Echoes the authenticated user and any identity header that reached the handler.
async fn echo(Extension(user): Extension<User>, headers: HeaderMap) -> axum::Json<Value> {
    let leaked: Vec<String> = headers
        .keys()
        .map(|h| h.as_str().to_owned())
        .filter(|h| h.starts_with("x-remote-") || h == "authorization")
        .collect();
    axum::Json(json!({"user": user, "leaked": leaked}))
}

fn app() -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(echo))
        .fallback(echo)
}

struct Env {
    sandbox: SandboxHandle,
    client: kube::Client,
    auth: Arc<AuthConfigCell>,
    cancel: CancellationToken,
}

async fn client_for(sandbox: &SandboxHandle, credentials: &Credentials) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&sandbox.kubeconfig(credentials)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

async fn env() -> Env {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = client_for(&sandbox, &Credentials::Token(sandbox.admin_token().into())).await;
    let cancel = CancellationToken::new();
    let auth = AuthConfigCell::new();
    auth.spawn_watch(client.clone(), cancel.clone());
    eventually("the auth ConfigMap loads", || async {
        auth.loaded().then_some(())
    })
    .await;
    Env {
        sandbox,
        client,
        auth,
        cancel,
    }
}

impl Env {
    /// The adapter with a certificate for localhost; returns it and its CA (PEM).
    async fn adapter(&self) -> (ServerHandle, String) {
        let bundle = Bundle::generate(&["localhost".into()], None).unwrap();
        let certs = ServingCert::new(bundle.certified_key().unwrap());
        (self.adapter_with(certs).await, bundle.ca_pem)
    }

    async fn adapter_with(&self, certs: Arc<ServingCert>) -> ServerHandle {
        let security = Security::new(self.auth.clone(), self.client.clone());
        let tls = TlsSettings {
            certs,
            auth: Some(self.auth.clone()),
        };
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        server::serve(addr, tls, secure(app(), security), self.cancel.clone())
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    for _ in 0..200 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn roots(ca_pem: &str) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    roots
}

fn tls_client(ca_pem: &str, identity: Option<(&str, &str)>) -> rustls::ClientConfig {
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots(ca_pem));
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}

/// `GET https://localhost:<port><path>` with an optional client certificate and headers.
async fn call(
    adapter: &ServerHandle,
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(tls_client(ca_pem, identity))
        .build()
        .unwrap();
    let mut request = client.get(format!(
        "https://localhost:{}{path}",
        adapter.local_addr().port()
    ));
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

fn proxy_headers(user: &str) -> Vec<(&str, &str)> {
    vec![
        ("X-Remote-User", user),
        ("X-Remote-Group", "system:serviceaccounts"),
        ("X-Remote-Group", "system:serviceaccounts:kube-system"),
        (
            "X-Remote-Extra-Authentication.kubernetes.io%2fcredential-Id",
            "JTI=1",
        ),
    ]
}

#[tokio::test]
async fn anonymous_requests_reach_health_but_not_metrics() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let (code, body) = call(&adapter, &ca, None, "/healthz", &[]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["user"]["name"], "system:anonymous");
    assert_eq!(body["user"]["groups"], json!(["system:unauthenticated"]));
    let (code, body) = call(&adapter, &ca, None, METRIC, &[]).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "queue.external.metrics.k8s.io is forbidden: User \"system:anonymous\" cannot list resource \"queue\" in API group \"external.metrics.k8s.io\" in the namespace \"shop\""
    );
    assert_eq!(body["reason"], "Forbidden");
    assert_eq!(body["details"]["group"], "external.metrics.k8s.io");
}

#[tokio::test]
async fn forged_identity_headers_without_the_proxy_certificate_are_ignored_and_stripped() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let forged = [
        ("X-Remote-User", "sandbox-admin"),
        ("X-Remote-Group", "system:masters"),
    ];
    let (code, body) = call(&adapter, &ca, None, METRIC, &forged).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("system:anonymous"),
        "{body}"
    );
    let (code, body) = call(&adapter, &ca, None, "/healthz", &forged).await;
    assert_eq!(code, 200);
    assert_eq!(body["user"]["name"], "system:anonymous");
    assert_eq!(
        body["leaked"],
        json!([]),
        "identity headers never reach handlers"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_not_a_front_proxy() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let rogue = Authority::new("front-proxy-ca").unwrap();
    let cert = rogue
        .issue("front-proxy-client", &[], &[], &[], Usage::Client)
        .unwrap();
    let forged = [
        ("X-Remote-User", "sandbox-admin"),
        ("X-Remote-Group", "system:masters"),
    ];
    let identity = Some((cert.cert_pem.as_str(), cert.key_pem.as_str()));
    // As in Go: an unverifiable certificate is an authentication error, not anonymous.
    let (code, body) = call(&adapter, &ca, identity, METRIC, &forged).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["reason"], "Unauthorized");
}

#[tokio::test]
async fn a_front_proxy_certificate_with_a_disallowed_cn_is_unauthorized() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let cert = env
        .sandbox
        .pki()
        .front_proxy_ca
        .issue("someone-else", &[], &[], &[], Usage::Client)
        .unwrap();
    let identity = Some((cert.cert_pem.as_str(), cert.key_pem.as_str()));
    let (code, body) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(body["message"], "Unauthorized");

    // The right CN, but a server certificate: without client-auth usage the chain is refused.
    let server_usage = env
        .sandbox
        .pki()
        .front_proxy_ca
        .issue("front-proxy-client", &[], &[], &[], Usage::Server)
        .unwrap();
    let identity = Some((
        server_usage.cert_pem.as_str(),
        server_usage.key_pem.as_str(),
    ));
    let (code, _) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
    assert_eq!(code, 401);
}

#[tokio::test]
async fn the_front_proxy_user_is_authorized_by_rbac() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let proxy = &env.sandbox.pki().front_proxy_client;
    let identity = Some((proxy.cert_pem.as_str(), proxy.key_pem.as_str()));
    let (code, body) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["user"]["name"], HPA);
    assert_eq!(
        body["user"]["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:kube-system",
            "system:authenticated"
        ])
    );
    assert_eq!(
        body["user"]["extra"]["authentication.kubernetes.io/credential-id"],
        json!(["JTI=1"])
    );
    assert_eq!(body["leaked"], json!([]));

    let (code, body) = call(&adapter, &ca, identity, METRIC, &proxy_headers("eve")).await;
    assert_eq!(code, 403, "{body}");
    assert_eq!(
        body["message"],
        "queue.external.metrics.k8s.io is forbidden: User \"eve\" cannot list resource \"queue\" in API group \"external.metrics.k8s.io\" in the namespace \"shop\""
    );
    // Custom metrics: get on the described resource with the metric as subresource.
    let custom = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/shop/pods/*/hits";
    let (code, _) = call(&adapter, &ca, identity, custom, &proxy_headers(HPA)).await;
    assert_eq!(code, 200);
    let (code, body) = call(&adapter, &ca, identity, custom, &proxy_headers("eve")).await;
    assert_eq!(code, 403);
    assert_eq!(
        body["message"],
        "pods.custom.metrics.k8s.io \"*\" is forbidden: User \"eve\" cannot get resource \"pods/hits\" in API group \"custom.metrics.k8s.io\" in the namespace \"shop\""
    );
}

#[tokio::test]
async fn bearer_tokens_are_reviewed_and_authorized() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let hpa = env
        .sandbox
        .service_account_token("kube-system", "horizontal-pod-autoscaler");
    let auth = format!("Bearer {hpa}");
    let (code, body) = call(&adapter, &ca, None, METRIC, &[("Authorization", &auth)]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["user"]["name"], HPA);
    assert_eq!(body["leaked"], json!([]), "the used token is removed");

    let other = env.sandbox.service_account_token("shop", "worker");
    let auth = format!("Bearer {other}");
    let (code, body) = call(&adapter, &ca, None, METRIC, &[("Authorization", &auth)]).await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("User \"system:serviceaccount:shop:worker\" cannot list"),
        "{body}"
    );
    let (code, _) = call(
        &adapter,
        &ca,
        None,
        METRIC,
        &[("Authorization", "Bearer nope")],
    )
    .await;
    assert_eq!(code, 401, "a rejected token never falls back to anonymous");
}

#[tokio::test]
async fn client_ca_certificates_authenticate_with_cn_and_organizations() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let Credentials::ClientCertificate { cert_pem, key_pem } = env
        .sandbox
        .issue_client_certificate("carol", &["system:masters"])
        .unwrap()
    else {
        unreachable!()
    };
    let identity = Some((cert_pem.as_str(), key_pem.as_str()));
    let mut headers = proxy_headers("eve");
    headers.push(("Authorization", "Bearer unused"));
    let (code, body) = call(&adapter, &ca, identity, METRIC, &headers).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["leaked"], json!([]), "no credential reaches handlers");
    assert_eq!(
        body["user"]["name"], "carol",
        "X-Remote-User is not honoured"
    );
    assert_eq!(
        body["user"]["groups"],
        json!(["system:masters", "system:authenticated"])
    );
}

async fn presented_certificate(addr: SocketAddr, ca_pem: &str) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls_client(ca_pem, None)));
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn rotated_certificate_files_are_served_without_restart() {
    let env = env().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = Bundle::generate(&["localhost".into()], None).unwrap();
    std::fs::write(&cert_file, &first.cert_pem).unwrap();
    std::fs::write(&key_file, &first.key_pem).unwrap();
    let certs = ServingCert::new(certs::load_files(&cert_file, &key_file).await.unwrap());
    tokio::spawn(certs::watch_files(
        certs.clone(),
        cert_file.clone(),
        key_file.clone(),
        Duration::from_millis(100),
        env.cancel.clone(),
    ));
    let adapter = env.adapter_with(certs).await;
    let addr = adapter.local_addr();
    assert_eq!(
        presented_certificate(addr, &first.ca_pem).await,
        der(&first.cert_pem)
    );

    // A half-written pair (new certificate, old key) keeps the old certificate.
    let second = Bundle::generate(&["localhost".into()], Some(&first)).unwrap();
    std::fs::write(&cert_file, &second.cert_pem).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        presented_certificate(addr, &first.ca_pem).await,
        der(&first.cert_pem)
    );

    std::fs::write(&key_file, &second.key_pem).unwrap();
    eventually("the new certificate is served", || async {
        (presented_certificate(addr, &first.ca_pem).await == der(&second.cert_pem)).then_some(())
    })
    .await;
}

fn apiservice(name: &str, group: &str, version: &str, port: u16) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
        "metadata": {"name": name},
        "spec": {"group": group, "version": version, "groupPriorityMinimum": 100, "versionPriority": 100,
                 "service": {"name": "tidescale-metrics-apiserver", "namespace": "keda", "port": port}}}))
    .unwrap()
}

fn apiservices(client: &kube::Client) -> Api<DynamicObject> {
    let resource = ApiResource {
        group: "apiregistration.k8s.io".into(),
        version: "v1".into(),
        api_version: "apiregistration.k8s.io/v1".into(),
        kind: "APIService".into(),
        plural: "apiservices".into(),
    };
    Api::all_with(client.clone(), &resource)
}

async fn keda_namespace(client: &kube::Client) {
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "keda"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
}

fn self_signed(client: &kube::Client) -> SelfSigned {
    SelfSigned {
        client: client.clone(),
        namespace: "keda".into(),
        secret_name: "tidescale-certs".into(),
        service_name: "tidescale-metrics-apiserver".into(),
        publish_ca_bundle: true,
    }
}

#[tokio::test]
async fn the_self_generated_certificate_is_shared_through_the_secret_and_published() {
    let env = env().await;
    keda_namespace(&env.client).await;
    let api = apiservices(&env.client);
    let registered = apiservice(
        "v1beta1.external.metrics.k8s.io",
        "external.metrics.k8s.io",
        "v1beta1",
        443,
    );
    api.create(&PostParams::default(), &registered)
        .await
        .unwrap();

    // Two replicas starting together end up serving the same certificate.
    let (first, second) = (self_signed(&env.client), self_signed(&env.client));
    let (a, b) = tokio::join!(first.start(), second.start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.current().cert[0], b.current().cert[0]);
    let secret = Api::<Secret>::namespaced(env.client.clone(), "keda")
        .get("tidescale-certs")
        .await
        .unwrap();
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.unwrap();
    for key in ["ca.crt", "tls.crt", "tls.key"] {
        assert!(data.contains_key(key), "{key}");
    }
    assert_eq!(
        der(&String::from_utf8(data["tls.crt"].0.clone()).unwrap()),
        a.current().cert[0].to_vec()
    );
    let third = self_signed(&env.client).start().await.unwrap();
    assert_eq!(
        third.current().cert[0],
        a.current().cert[0],
        "a later replica reuses it"
    );

    let published = api.get("v1beta1.external.metrics.k8s.io").await.unwrap();
    let bundle = base64::engine::general_purpose::STANDARD
        .decode(published.data["spec"]["caBundle"].as_str().unwrap())
        .unwrap();
    assert_eq!(bundle, data["ca.crt"].0, "the CA is published in caBundle");
}

#[tokio::test]
async fn requests_through_the_aggregation_proxy_are_authenticated_and_authorized() {
    let env = env().await;
    keda_namespace(&env.client).await;
    let certs = self_signed(&env.client).start().await.unwrap();
    let adapter = env.adapter_with(certs).await;
    let port = adapter.local_addr().port();
    let objects = [
        (
            "",
            "v1",
            "Service",
            "services",
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "tidescale-metrics-apiserver", "namespace": "keda"},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]}}),
        ),
        (
            "",
            "v1",
            "Endpoints",
            "endpoints",
            json!({"apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": "tidescale-metrics-apiserver", "namespace": "keda"},
            "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"name": "https", "port": port}]}]}),
        ),
    ];
    for (group, version, kind, plural, object) in objects {
        let resource = ApiResource {
            group: group.into(),
            version: version.into(),
            api_version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
        };
        let api: Api<DynamicObject> = Api::namespaced_with(env.client.clone(), "keda", &resource);
        api.create(
            &PostParams::default(),
            &serde_json::from_value(object).unwrap(),
        )
        .await
        .unwrap();
    }
    let api = apiservices(&env.client);
    let registered = apiservice(
        "v1beta1.external.metrics.k8s.io",
        "external.metrics.k8s.io",
        "v1beta1",
        443,
    );
    api.create(&PostParams::default(), &registered)
        .await
        .unwrap();
    self_signed(&env.client)
        .publish(&{
            let secret = Api::<Secret>::namespaced(env.client.clone(), "keda")
                .get("tidescale-certs")
                .await
                .unwrap();
            String::from_utf8(secret.data.unwrap()["ca.crt"].0.clone()).unwrap()
        })
        .await
        .unwrap();
    eventually("the APIService becomes Available", || async {
        let svc = api.get("v1beta1.external.metrics.k8s.io").await.ok()?;
        let conditions = svc.data["status"]["conditions"].as_array()?.clone();
        conditions
            .iter()
            .any(|c| c["type"] == "Available" && c["status"] == "True")
            .then_some(())
    })
    .await;

    let hpa = client_for(
        &env.sandbox,
        &Credentials::Token(
            env.sandbox
                .service_account_token("kube-system", "horizontal-pod-autoscaler"),
        ),
    )
    .await;
    let request = http::Request::get(METRIC).body(Vec::new()).unwrap();
    let body: Value = serde_json::from_str(&hpa.request_text(request).await.unwrap()).unwrap();
    assert_eq!(body["user"]["name"], HPA, "{body}");
    assert!(
        body["user"]["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("system:authenticated"))
    );

    // A user RBAC does not allow is refused (by the API server or by the adapter's review).
    let eve_token = env.sandbox.issue_token(UserInfo::new("eve", &[]));
    let eve = client_for(&env.sandbox, &Credentials::Token(eve_token)).await;
    let request = http::Request::get(METRIC).body(Vec::new()).unwrap();
    match eve.request_text(request).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(
                status.message.contains("User \"eve\" cannot list"),
                "{status:?}"
            );
        }
        other => panic!("expected 403, got {other:?}"),
    }
}

#[tokio::test]
async fn http2_is_negotiated_and_shutdown_drains() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let mut config = tls_client(&ca, None);
    config.alpn_protocols = vec![b"h2".to_vec()];
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap();
    let addr = adapter.local_addr();
    let response = client
        .get(format!("https://localhost:{}/healthz", addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.status(), 200);

    env.cancel.cancel();
    tokio::time::timeout(Duration::from_secs(15), adapter.stopped())
        .await
        .expect("the server stops");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn a_rotated_authentication_configmap_is_applied_live() {
    let env = env().await;
    let (adapter, ca) = env.adapter().await;
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(env.client.clone(), "kube-system");
    let set_allowed = |names: &'static str| {
        let configmaps = configmaps.clone();
        async move {
            let patch = json!({"data": {"requestheader-allowed-names": names}});
            configmaps
                .patch(
                    "extension-apiserver-authentication",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
    };
    let other = env
        .sandbox
        .pki()
        .front_proxy_ca
        .issue("another-proxy", &[], &[], &[], Usage::Client)
        .unwrap();
    let identity = Some((other.cert_pem.as_str(), other.key_pem.as_str()));
    let (code, _) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
    assert_eq!(code, 401);

    set_allowed("[\"another-proxy\"]").await;
    eventually("the new allowed names apply", || async {
        let (code, _) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
        (code == 200).then_some(())
    })
    .await;

    // A malformed update is rejected and the previous settings stay.
    set_allowed("not json").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (code, _) = call(&adapter, &ca, identity, METRIC, &proxy_headers(HPA)).await;
    assert_eq!(code, 200);
}

#[tokio::test]
async fn an_unusable_stored_certificate_is_replaced_and_replicas_follow_the_secret() {
    let env = env().await;
    keda_namespace(&env.client).await;
    let secrets = Api::<Secret>::namespaced(env.client.clone(), "keda");
    let write = |bundle: Bundle| {
        let secrets = secrets.clone();
        async move {
            let data: std::collections::BTreeMap<String, k8s_openapi::ByteString> = [
                ("ca.crt", bundle.ca_pem),
                ("ca.key", bundle.ca_key_pem),
                ("tls.crt", bundle.cert_pem),
                ("tls.key", bundle.key_pem),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v.into_bytes())))
            .collect();
            let patch = json!({"data": data});
            secrets
                .patch(
                    "tidescale-certs",
                    &kube::api::PatchParams::default(),
                    &kube::api::Patch::Merge(&patch),
                )
                .await
                .unwrap();
        }
    };
    // A certificate for another Service name is not reused.
    let foreign = Bundle::generate(&["other.keda.svc".into()], None).unwrap();
    let secret: Secret = serde_json::from_value(json!({"metadata": {"name": "tidescale-certs"},
        "type": "kubernetes.io/tls", "data": {}}))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    write(foreign.clone()).await;
    let source = self_signed(&env.client);
    let serving = source.start().await.unwrap();
    assert_ne!(serving.current().cert[0].to_vec(), der(&foreign.cert_pem));
    let stored = secrets.get("tidescale-certs").await.unwrap().data.unwrap();
    let stored_pem = String::from_utf8(stored["tls.crt"].0.clone()).unwrap();
    assert_eq!(der(&stored_pem), serving.current().cert[0].to_vec());

    // Another replica renews: this one picks the new certificate up from the Secret.
    tokio::spawn(source.clone().maintain(
        serving.clone(),
        Duration::from_millis(100),
        env.cancel.clone(),
    ));
    let renewed = Bundle::generate(&source.dns_names(), None).unwrap();
    write(renewed.clone()).await;
    eventually("the renewed certificate is served", || async {
        (serving.current().cert[0].to_vec() == der(&renewed.cert_pem)).then_some(())
    })
    .await;
}
