use super::*;

fn key(props: &[(&'static str, &str)]) -> ClientKey {
    ClientKey {
        servers: "b:9092".into(),
        props: props
            .iter()
            .map(|(k, v)| (*k, SecretString::from(*v)))
            .collect(),
    }
}

#[test]
fn plaintext_and_sasl_password_mechanisms_take_the_shared_path() {
    let plain = key(&[("security.protocol", "plaintext")])
        .shared_security()
        .expect("plaintext");
    assert!(plain.sasl.is_none() && plain.tls.is_none());
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let k = key(&[
            ("sasl.mechanism", mechanism),
            ("sasl.password", "p"),
            ("sasl.username", "u"),
            ("security.protocol", "sasl_plaintext"),
        ]);
        let security = k.shared_security().expect(mechanism);
        assert_eq!(security.sasl.expect(mechanism).mechanism.name(), mechanism);
        assert!(security.tls.is_none());
    }
}

#[test]
fn tls_with_and_without_sasl_takes_the_shared_path() {
    let tls = key(&[
        ("enable.ssl.certificate.verification", "false"),
        ("security.protocol", "ssl"),
        ("ssl.ca.pem", "CA"),
        ("ssl.certificate.pem", "CERT"),
        ("ssl.endpoint.identification.algorithm", "none"),
        ("ssl.key.password", "KP"),
        ("ssl.key.pem", "KEY"),
    ])
    .shared_security()
    .expect("ssl");
    assert!(tls.sasl.is_none());
    let settings = tls.tls.expect("tls settings");
    assert!(settings.unsafe_ssl);
    assert_eq!(
        (settings.ca.as_deref(), settings.cert.as_deref()),
        (Some("CA"), Some("CERT"))
    );
    assert_eq!(
        (settings.key.as_deref(), settings.key_password.as_deref()),
        (Some("KEY"), Some("KP"))
    );
    let sasl_ssl = key(&[
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.password", "p"),
        ("sasl.username", "u"),
        ("security.protocol", "sasl_ssl"),
    ])
    .shared_security()
    .expect("sasl_ssl");
    assert_eq!(
        sasl_ssl.sasl.expect("sasl").mechanism,
        Mechanism::ScramSha512
    );
    let settings = sasl_ssl.tls.expect("tls settings");
    assert!(!settings.unsafe_ssl && settings.ca.is_none());
}

#[test]
fn oauthbearer_and_gssapi_keep_the_per_group_handle() {
    for props in [
        &[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.client.id", "c"),
            ("sasl.oauthbearer.method", "oidc"),
            ("security.protocol", "sasl_plaintext"),
        ][..],
        &[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.client.id", "c"),
            ("sasl.oauthbearer.method", "oidc"),
            ("security.protocol", "sasl_ssl"),
        ],
        &[
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.password", "p"),
            ("sasl.username", "u"),
            ("security.protocol", "sasl_plaintext"),
        ],
        // SASL credentials without a SASL protocol, or a protocol without them: not ours.
        &[("sasl.mechanism", "PLAIN"), ("security.protocol", "ssl")],
        &[("security.protocol", "sasl_ssl")],
    ] {
        assert!(key(props).shared_security().is_none(), "{props:?}");
    }
}

#[test]
fn tls_material_rustls_cannot_load_keeps_the_per_group_handle() {
    // A legacy (non-PKCS#8) encrypted key: OpenSSL reads it, the shared path does not.
    let k = key(&[
        ("security.protocol", "ssl"),
        (
            "ssl.certificate.pem",
            include_str!("../../tests/fixtures/tls/client-cert.pem"),
        ),
        ("ssl.key.password", "pw"),
        (
            "ssl.key.pem",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END RSA PRIVATE KEY-----\n",
        ),
    ]);
    assert!(k.shared_security().is_some());
    assert!(shared_brokers(&k).is_none());
    let ok = key(&[("security.protocol", "ssl")]);
    assert!(shared_brokers(&ok).is_some());
}

#[test]
fn debug_shows_fingerprints_never_secrets() {
    let k = key(&[
        ("sasl.mechanism", "PLAIN"),
        ("sasl.password", "hunter2"),
        ("sasl.username", "alice"),
        ("security.protocol", "sasl_ssl"),
        ("ssl.ca.pem", "CA-PEM"),
        ("ssl.key.password", "key-pw"),
        ("ssl.key.pem", "KEY-PEM"),
    ]);
    let text = format!("{k:?}");
    for secret in ["hunter2", "alice", "CA-PEM", "key-pw", "KEY-PEM"] {
        assert!(!text.contains(secret), "{text}");
    }
    assert!(text.contains("ssl.ca.pem=sha256:"), "{text}");
    let other = key(&[("security.protocol", "ssl"), ("ssl.ca.pem", "OTHER-CA")]);
    assert_ne!(k, other);
}

/// The selection end to end, without I/O: 1,000 TLS triggers with distinct groups take shares
/// of ONE pooled client whose committed offsets come from the shared connections, and no
/// group-bound librdkafka handle is created.
#[cfg(feature = "kafka-tls")]
#[tokio::test]
async fn thousand_tls_groups_share_one_client_and_no_group_handle() {
    let servers = "127.0.0.1:1";
    let ca = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let k = ClientKey {
        servers: servers.into(),
        ..key(&[("security.protocol", "ssl"), ("ssl.ca.pem", &ca.cert.pem())])
    };
    let leases: Vec<Lease> = (0..1000)
        .map(|i| acquire(&k, &format!("group-{i}"), Duration::from_secs(1)).unwrap())
        .collect();
    assert!(
        leases
            .iter()
            .all(|l| matches!(l.reader, GroupReader::Shared(_)))
    );
    let stats = pool_stats(servers);
    assert_eq!((stats.clients, stats.group_handles), (1, 0), "{stats:?}");
    drop(leases);
    assert_eq!(pool_stats(servers), PoolStats::default());
}
