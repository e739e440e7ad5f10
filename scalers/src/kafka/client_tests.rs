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
    assert!(matches!(
        key(&[("security.protocol", "plaintext")]).shared_auth(),
        Some(None)
    ));
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let k = key(&[
            ("sasl.mechanism", mechanism),
            ("sasl.password", "p"),
            ("sasl.username", "u"),
            ("security.protocol", "sasl_plaintext"),
        ]);
        let auth = k.shared_auth().flatten().expect(mechanism);
        assert_eq!(auth.mechanism.name(), mechanism);
    }
}

#[test]
fn tls_oauthbearer_and_gssapi_keep_the_per_group_handle() {
    for props in [
        &[("security.protocol", "ssl")][..],
        &[
            ("sasl.mechanism", "PLAIN"),
            ("sasl.password", "p"),
            ("sasl.username", "u"),
            ("security.protocol", "sasl_ssl"),
        ],
        &[
            ("sasl.mechanism", "OAUTHBEARER"),
            ("sasl.oauthbearer.client.id", "c"),
            ("sasl.oauthbearer.method", "oidc"),
            ("security.protocol", "sasl_plaintext"),
        ],
        &[
            ("sasl.mechanism", "GSSAPI"),
            ("sasl.password", "p"),
            ("sasl.username", "u"),
            ("security.protocol", "sasl_plaintext"),
        ],
    ] {
        assert!(key(props).shared_auth().is_none(), "{props:?}");
    }
}
