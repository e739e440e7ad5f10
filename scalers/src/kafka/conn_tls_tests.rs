//! TLS on the shared connections, against the in-test broker of `conn_sasl_tests.rs` behind a
//! tokio-rustls acceptor with rcgen-made certificates. The client side is built exactly as a
//! trigger builds it: trigger parameters → `parse` → pool key → `client::shared_brokers`.

use std::sync::Mutex as StdMutex;
use std::time::Duration;

use futures::future::join_all;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};

use super::super::client::shared_brokers;
use super::sasl_tests::{PASSWORD, Seen, USER, serve};
use super::*;
use crate::ScalerConfig;

type Ca = CertifiedIssuer<'static, KeyPair>;

fn ca(name: &str) -> Ca {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf certificate and its key (DER for the server side, PEM for trigger parameters).
struct Leaf {
    der: CertificateDer<'static>,
    pem: String,
    key: KeyPair,
}

impl Leaf {
    fn issued(issuer: &Ca, names: &[&str], usage: ExtendedKeyUsagePurpose) -> Self {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let issuer: &rcgen::Issuer<'_, KeyPair> = issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        }
    }

    fn self_signed(names: &[&str]) -> Self {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = CertificateParams::new(names)
            .unwrap()
            .self_signed(&key)
            .unwrap();
        Self {
            der: cert.der().clone(),
            pem: cert.pem(),
            key,
        }
    }

    fn key_der(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()))
    }

    /// The key as an encrypted PKCS#8 PEM (`keyPassword`).
    fn encrypted_key_pem(&self, password: &str) -> String {
        let der = self.key.serialize_der();
        let info = pkcs8::PrivateKeyInfo::try_from(der.as_slice()).unwrap();
        let (salt, iv) = ([7u8; 16], [9u8; 16]);
        let params =
            pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, &salt, &iv).unwrap();
        let doc = info.encrypt_with_params(params, password).unwrap();
        doc.to_pem("ENCRYPTED PRIVATE KEY", pkcs8::LineEnding::LF)
            .unwrap()
            .to_string()
    }
}

/// What a TLS broker saw below the Kafka protocol.
#[derive(Default)]
struct TlsSeen {
    accepted: AtomicUsize,
    handshakes: AtomicUsize,
    sni: StdMutex<Vec<Option<String>>>,
}

struct Broker {
    port: u16,
    seen: Arc<Seen>,
    tls: Arc<TlsSeen>,
}

/// Start one TLS broker per listener. Each presents `server`, requires a client certificate
/// issued by `client_ca` if given, requires SASL `mechanism` if given, and names a coordinator
/// among all of them by group (`localhost:<port>`).
async fn brokers(
    count: usize,
    server: &Leaf,
    client_ca: Option<&Ca>,
    mechanism: Option<Mechanism>,
) -> Vec<Broker> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(vec![server.der.clone()], server.key_der())
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let mut listeners = Vec::new();
    for _ in 0..count {
        listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let coordinators: Vec<(String, u16)> = listeners
        .iter()
        .map(|l| ("localhost".to_owned(), l.local_addr().unwrap().port()))
        .collect();
    let mut out = Vec::new();
    for listener in listeners {
        let broker = Broker {
            port: listener.local_addr().unwrap().port(),
            seen: Arc::default(),
            tls: Arc::default(),
        };
        let (seen, tls, acceptor) = (
            Arc::clone(&broker.seen),
            Arc::clone(&broker.tls),
            acceptor.clone(),
        );
        let coordinators = coordinators.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tls.accepted.fetch_add(1, Ordering::SeqCst);
                let (seen, tls, acceptor) = (Arc::clone(&seen), Arc::clone(&tls), acceptor.clone());
                let coordinators = coordinators.clone();
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else {
                        return;
                    };
                    tls.handshakes.fetch_add(1, Ordering::SeqCst);
                    let sni = stream.get_ref().1.server_name().map(str::to_owned);
                    tls.sni.lock().unwrap().push(sni);
                    serve(stream, coordinators, mechanism, seen).await;
                });
            }
        });
        out.push(broker);
    }
    out
}

fn servers(brokers: &[Broker]) -> String {
    brokers
        .iter()
        .map(|b| format!("localhost:{}", b.port))
        .collect::<Vec<_>>()
        .join(",")
}

/// The shared connections a `tls: enable` trigger with these parameters gets.
fn client(servers: &str, meta: &[(&str, &str)], auth: &[(&str, &str)]) -> Arc<Brokers> {
    let map = |kv: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    let mut metadata = map(&[
        ("bootstrapServers", servers),
        ("consumerGroup", "g"),
        ("tls", "enable"),
    ]);
    metadata.extend(map(meta));
    let cfg = ScalerConfig {
        trigger_type: "kafka".into(),
        metadata,
        auth_params: map(auth),
        ..ScalerConfig::default()
    };
    let trigger = crate::kafka::parse(&cfg).unwrap();
    let key = trigger
        .security
        .client_key(&trigger.bootstrap_servers)
        .unwrap();
    shared_brokers(&key).expect("TLS triggers take the shared path")
}

async fn fetch(brokers: &Brokers, group: &str) -> Result<Committed, WireError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    brokers.committed(group, &[("t".into(), 0)], deadline).await
}

/// The error of a failed fetch; it must quote none of `secrets`, and leave nothing open.
async fn failure(brokers: &Brokers, secrets: &[&str]) -> String {
    let err = fetch(brokers, "g").await.expect_err("must fail");
    let text = err.to_string();
    for s in secrets {
        assert!(!text.contains(s), "{text}");
    }
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert_eq!(
        brokers.open_connections(),
        0,
        "a failed connection is closed"
    );
    text
}

#[tokio::test]
async fn thousand_groups_over_tls_share_one_connection_per_broker() {
    let ca = ca("kafka test ca");
    let server = Leaf::issued(&ca, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let sasl_modes = [
        (None, "none"),
        (Some(Mechanism::Plain), "plaintext"),
        (Some(Mechanism::ScramSha256), "scram_sha256"),
        (Some(Mechanism::ScramSha512), "scram_sha512"),
    ];
    for (mechanism, sasl) in sasl_modes {
        let cluster = brokers(2, &server, None, mechanism).await;
        let auth = [
            ("ca", ca.pem()),
            ("username", USER.into()),
            ("password", PASSWORD.into()),
        ];
        let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let shared = client(&servers(&cluster), &[("sasl", sasl)], &auth);
        let polls = (0..1000).map(|i| {
            let shared = Arc::clone(&shared);
            async move { fetch(&shared, &format!("group-{i}")).await }
        });
        for got in join_all(polls).await {
            let got = got.unwrap_or_else(|e| panic!("{sasl}: {e}"));
            assert_eq!(got.get(&("t".to_owned(), 0)), Some(&42));
        }
        let fetches: Vec<usize> = cluster
            .iter()
            .map(|b| b.seen.offset_fetches.load(Ordering::SeqCst))
            .collect();
        assert_eq!(fetches.iter().sum::<usize>(), 1000, "{sasl}");
        assert!(fetches.iter().all(|n| *n > 0), "{sasl}: {fetches:?}");
        for b in &cluster {
            assert_eq!(b.tls.accepted.load(Ordering::SeqCst), 1, "{sasl}: TCP");
            assert_eq!(b.tls.handshakes.load(Ordering::SeqCst), 1, "{sasl}: TLS");
            assert_eq!(b.seen.connections.load(Ordering::SeqCst), 1, "{sasl}");
            assert_eq!(
                *b.tls.sni.lock().unwrap(),
                [Some("localhost".to_owned())],
                "{sasl}: SNI is the broker host"
            );
        }
        assert_eq!(shared.open_connections(), 2, "{sasl}: one per broker");
        assert_eq!(shared.connections_opened(), 2, "{sasl}: no reconnects");
        let debug = format!("{shared:?}");
        assert!(
            !debug.contains(PASSWORD) && !debug.contains(USER),
            "{debug}"
        );
    }
}

#[tokio::test]
async fn wrong_ca_or_name_is_a_clear_error_without_secrets() {
    let ca1 = ca("the broker's ca");
    let other = ca("some other ca");
    let client_cert = Leaf::issued(&other, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let key_pem = client_cert.key.serialize_pem();
    let server = Leaf::issued(&ca1, &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let cluster = brokers(1, &server, None, Some(Mechanism::ScramSha512)).await;
    let auth = [
        ("ca", other.pem()),
        ("cert", client_cert.pem.clone()),
        ("key", key_pem.clone()),
        ("username", USER.to_owned()),
        ("password", PASSWORD.to_owned()),
    ];
    let auth: Vec<(&str, &str)> = auth.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let meta = [("sasl", "scram_sha512")];
    let shared = client(&servers(&cluster), &meta, &auth);
    let text = failure(&shared, &[PASSWORD, &key_pem]).await;
    assert!(
        text.contains("TLS handshake failed") && text.contains("UnknownIssuer"),
        "{text}"
    );
    assert_eq!(cluster[0].seen.connections.load(Ordering::SeqCst), 0);

    // The right CA, but the certificate is for another host.
    let elsewhere = Leaf::issued(
        &ca1,
        &["kafka.example"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cluster = brokers(1, &elsewhere, None, None).await;
    let shared = client(&servers(&cluster), &[], &[("ca", &ca1.pem())]);
    let text = failure(&shared, &[]).await;
    assert!(text.contains("not valid for name \"localhost\""), "{text}");
}

#[tokio::test]
async fn unsafe_ssl_accepts_an_untrusted_certificate() {
    let untrusted = Leaf::self_signed(&["kafka.example"]);
    let cluster = brokers(1, &untrusted, None, Some(Mechanism::Plain)).await;
    let addr = servers(&cluster);
    let auth = [("username", USER), ("password", PASSWORD)];
    let strict = client(&addr, &[("sasl", "plaintext")], &auth);
    let text = failure(&strict, &[PASSWORD]).await;
    assert!(text.contains("invalid peer certificate"), "{text}");
    let meta = [("sasl", "plaintext"), ("unsafeSsl", "true")];
    let lax = client(&addr, &meta, &auth);
    for i in 0..10 {
        let got = fetch(&lax, &format!("g{i}")).await.unwrap();
        assert_eq!(got.get(&("t".to_owned(), 0)), Some(&42));
    }
    assert_eq!(lax.connections_opened(), 1);
}

#[tokio::test]
async fn client_certificate_required_by_the_broker() {
    let server_ca = ca("server ca");
    let client_ca = ca("client ca");
    let server = Leaf::issued(
        &server_ca,
        &["localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cluster = brokers(1, &server, Some(&client_ca), None).await;
    let addr = servers(&cluster);
    let ca_pem = server_ca.pem();

    // No client certificate: the broker refuses (after the handshake with TLS 1.3).
    let anonymous = client(&addr, &[], &[("ca", &ca_pem)]);
    let text = failure(&anonymous, &[]).await;
    assert!(text.contains("CertificateRequired"), "{text}");

    let leaf = Leaf::issued(&client_ca, &["client"], ExtendedKeyUsagePurpose::ClientAuth);
    let key_pem = leaf.key.serialize_pem();
    let encrypted = leaf.encrypted_key_pem("key-pw");
    for auth in [
        vec![
            ("ca", ca_pem.as_str()),
            ("cert", &leaf.pem),
            ("key", &key_pem),
        ],
        vec![
            ("ca", ca_pem.as_str()),
            ("cert", &leaf.pem),
            ("key", &encrypted),
            ("keyPassword", "key-pw"),
        ],
    ] {
        let shared = client(&addr, &[], &auth);
        let got = fetch(&shared, "g").await.unwrap();
        assert_eq!(got.get(&("t".to_owned(), 0)), Some(&42));
        assert_eq!(shared.open_connections(), 1);
    }
    assert_eq!(cluster[0].tls.accepted.load(Ordering::SeqCst), 3);
    assert_eq!(cluster[0].tls.handshakes.load(Ordering::SeqCst), 2);
    assert_eq!(cluster[0].seen.offset_fetches.load(Ordering::SeqCst), 2);
}

#[test]
fn server_name_is_the_broker_host() {
    assert_eq!(host_of("kafka-0.kafka:9093"), "kafka-0.kafka");
    assert_eq!(host_of("10.0.0.1:9093"), "10.0.0.1");
    assert_eq!(host_of("[::1]:9093"), "::1");
    assert_eq!(host_of("no-port"), "no-port");
}
