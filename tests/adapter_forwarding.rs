//! HA forwarding of the metrics adapter end to end: two adapters started as `tidescale operator`
//! starts them (`service::start`, sharing the self-generated certificate through the Secret),
//! one leading with a value in its store, the other following. Reads at the follower are
//! authenticated and authorized there, then answered by the leader over the replicas' mutual
//! TLS; a certificate that is not the shared one is never taken for a replica; forwarding
//! never loops; denied users are never forwarded.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Value, json};
use tidescale::adapter::AdapterArgs;
use tidescale::adapter::certs::Bundle;
use tidescale::adapter::server::ServerHandle;
use tidescale::adapter::service::{AdapterInputs, start};
use tidescale::operator::leader::{Leadership, LeadershipWatch};
use tidescale::scaling::store::{MetricRecord, MetricStore};
use tidescale::telemetry::Readiness;
use tidescale_sandbox::pki::{Authority, Usage};
use tidescale_sandbox::{Credentials, Sandbox, SandboxConfig, SandboxHandle};
use tokio_util::sync::CancellationToken;

const METRIC: &str = "/apis/external.metrics.k8s.io/v1beta1/namespaces/shop/s0-rabbitmq-orders?labelSelector=scaledobject.keda.sh%2Fname%3Dorders";
const RESOURCE_LIST: &str = "/apis/external.metrics.k8s.io/v1beta1";
const HPA: &str = "system:serviceaccount:kube-system:horizontal-pod-autoscaler";

async fn admin_client(sandbox: &SandboxHandle) -> kube::Client {
    let credentials = Credentials::Token(sandbox.admin_token().into());
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&sandbox.kubeconfig(&credentials)).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    kube::Client::try_from(config).unwrap()
}

struct Replica {
    server: ServerHandle,
    leadership: LeadershipWatch,
}

impl Replica {
    fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.server.local_addr().port())
    }

    fn follow(&self, endpoint: Option<String>) {
        self.leadership.publish(Leadership {
            is_leader: false,
            holder: endpoint.as_ref().map(|_| "other".to_owned()),
            leader_endpoint: endpoint,
        });
    }
}

/// `tidescale dev`'s adapter flags: a free local port, the self-generated certificate kept in
/// `keda/tidescale-certs` (shared by both replicas).
fn adapter_args() -> AdapterArgs {
    AdapterArgs {
        disable_adapter: false,
        adapter_bind_address: "127.0.0.1:0".parse().unwrap(),
        tls_cert_file: None,
        tls_private_key_file: None,
        adapter_service_name: "tidescale-metrics-apiserver".to_owned(),
        pod_namespace: "keda".to_owned(),
        cert_secret_name: "tidescale-certs".to_owned(),
        skip_ca_bundle_publish: false,
    }
}

async fn replica(client: &kube::Client, store: MetricStore, cancel: &CancellationToken) -> Replica {
    let leadership = LeadershipWatch::default();
    let readiness = Readiness::new();
    readiness.set_ready();
    let inputs = AdapterInputs {
        store,
        readiness,
        leadership: Some(leadership.subscribe()),
    };
    let server = start(&adapter_args(), client.clone(), inputs, cancel.clone())
        .await
        .unwrap();
    Replica { server, leadership }
}

fn tls_client(ca_pem: &str, cert_pem: &str, key_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(
        CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .map(Result::unwrap)
            .collect(),
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap(),
    )
    .unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

/// Who calls, as the aggregator would: `user` behind the front-proxy certificate.
struct Caller {
    client: reqwest::Client,
}

struct Answer {
    status: u16,
    retry_after: Option<String>,
    body: Value,
}

impl Caller {
    async fn get(&self, replica: &Replica, path: &str, user: &str) -> Answer {
        let url = format!(
            "https://localhost:{}{path}",
            replica.server.local_addr().port()
        );
        let response = self
            .client
            .get(url)
            .header("X-Remote-User", user)
            .header("X-Remote-Group", "system:serviceaccounts")
            .header("X-Remote-Group", "system:serviceaccounts:kube-system")
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let text = response.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer {
            status,
            retry_after,
            body,
        }
    }
}

fn value_of(answer: &Answer) -> &Value {
    &answer.body["items"][0]["value"]
}

#[tokio::test]
async fn followers_forward_metric_reads_to_the_leader() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let sandbox = Sandbox::start(SandboxConfig::default()).await.unwrap();
    let client = admin_client(&sandbox).await;
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "keda"}})).unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();

    let leader_store = MetricStore::default();
    leader_store.record_poll(
        "shop",
        "orders",
        BTreeMap::from([(
            "s0-rabbitmq-orders".to_owned(),
            MetricRecord {
                value: 7.0,
                active: true,
                timestamp: Timestamp::UNIX_EPOCH,
                error: None,
            },
        )]),
    );
    // Sequential starts: B reuses the certificate A stored in the Secret.
    let a = replica(&client, leader_store, &cancel).await;
    let b = replica(&client, MetricStore::default(), &cancel).await;
    a.leadership.publish(Leadership {
        is_leader: true,
        holder: Some("a".into()),
        leader_endpoint: Some(a.endpoint()),
    });
    b.follow(Some(a.endpoint()));

    let stored = Api::<Secret>::namespaced(client.clone(), "keda")
        .get("tidescale-certs")
        .await
        .unwrap()
        .data
        .unwrap();
    let text = |key: &str| String::from_utf8(stored[key].0.clone()).unwrap();
    let shared = Bundle {
        ca_pem: text("ca.crt"),
        ca_key_pem: text("ca.key"),
        cert_pem: text("tls.crt"),
        key_pem: text("tls.key"),
    };
    let proxy = &sandbox.pki().front_proxy_client;
    let aggregator = Caller {
        client: tls_client(&shared.ca_pem, &proxy.cert_pem, &proxy.key_pem),
    };
    // Wait until both adapters loaded the authentication settings.
    for replica in [&a, &b] {
        let mut tries = 0;
        while aggregator.get(replica, RESOURCE_LIST, HPA).await.status != 200 {
            tries += 1;
            assert!(
                tries < 100,
                "the adapter never authenticates the front proxy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    // 1. The follower answers with the leader's value; so does the leader.
    let at_b = aggregator.get(&b, METRIC, HPA).await;
    assert_eq!(at_b.status, 200, "{}", at_b.body);
    assert_eq!(value_of(&at_b), "7", "{}", at_b.body);
    let at_a = aggregator.get(&a, METRIC, HPA).await;
    assert_eq!(at_a.status, 200, "{}", at_a.body);
    assert_eq!(at_a.body, at_b.body, "forwarded verbatim");

    // 2. No leader known: 503 with Retry-After, but the resource list is answered locally.
    b.follow(None);
    let waiting = aggregator.get(&b, METRIC, HPA).await;
    assert_eq!(waiting.status, 503, "{}", waiting.body);
    assert_eq!(waiting.body["kind"], "Status", "{}", waiting.body);
    assert!(waiting.retry_after.is_some(), "Retry-After is set");
    let list = aggregator.get(&b, RESOURCE_LIST, HPA).await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(list.body["kind"], "APIResourceList", "{}", list.body);

    // 3. Certificates other than the shared one are not replicas: they are authenticated as
    // usual, and neither a stranger's nor a sibling from the same CA is trusted.
    let rogue = Authority::new("rogue")
        .unwrap()
        .issue("tidescale-metrics-apiserver", &[], &[], &[], Usage::Client)
        .unwrap();
    let sibling = Bundle::generate(&["localhost".into()], Some(&shared)).unwrap();
    assert_ne!(sibling.cert_pem, shared.cert_pem);
    for (cert, key) in [
        (&rogue.cert_pem, &rogue.key_pem),
        (&sibling.cert_pem, &sibling.key_pem),
    ] {
        let stranger = Caller {
            client: tls_client(&shared.ca_pem, cert, key),
        };
        let answer = stranger.get(&a, METRIC, HPA).await;
        assert_eq!(answer.status, 401, "{}", answer.body);
    }

    // 4. Each believes the other leads: the forwarded read is not forwarded again.
    a.follow(Some(b.endpoint()));
    b.follow(Some(a.endpoint()));
    let started = Instant::now();
    let looped = tokio::time::timeout(Duration::from_secs(6), aggregator.get(&b, METRIC, HPA))
        .await
        .expect("a forwarding loop never answers");
    assert!(started.elapsed() < Duration::from_secs(6));
    assert_eq!(looped.status, 503, "{}", looped.body);
    assert!(looped.retry_after.is_some(), "Retry-After is relayed");
    let list = aggregator.get(&b, RESOURCE_LIST, HPA).await;
    assert_eq!(list.status, 200, "{}", list.body);

    // 5. A denied user is refused by the follower itself and never forwarded: the "leader"
    // is a listener counting connections.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    b.follow(Some(format!("https://127.0.0.1:{port}")));
    let denied = aggregator.get(&b, METRIC, "eve").await;
    assert_eq!(denied.status, 403, "{}", denied.body);
    assert!(
        denied.body["message"]
            .as_str()
            .unwrap()
            .contains("User \"eve\" cannot list"),
        "{}",
        denied.body
    );
    assert_eq!(connections.load(Ordering::SeqCst), 0, "eve was forwarded");
    // The same read by an allowed user does go to the leader (which fails here).
    let allowed = aggregator.get(&b, METRIC, HPA).await;
    assert_eq!(allowed.status, 503, "{}", allowed.body);
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}
