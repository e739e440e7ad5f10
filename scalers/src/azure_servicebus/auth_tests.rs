use rstest::rstest;

use super::*;
use crate::azure_ad::{WorkloadIdentity, parse_token_reply, token_error};

#[test]
fn sas_token_matches_an_independent_implementation() {
    // Computed with Python's hmac + urllib.parse.quote_plus (Go QueryEscape semantics).
    let key = SecretString::from("c2VjcmV0S2V5PQ==".to_owned());
    let token = sas_token(
        "https://ns.servicebus.windows.net/My Queue",
        "RootManageSharedAccessKey",
        &key,
        1_700_000_000,
    );
    assert_eq!(
        token,
        "SharedAccessSignature sr=https%3a%2f%2fns.servicebus.windows.net%2fmy+queue\
         &sig=Be2G3vjuhkW0122xE8ZJyaNQ9sUC7ROYMmbwbEyi7h4%3D&se=1700000000&skn=RootManageSharedAccessKey"
    );
}

#[test]
fn authorization_expires_after_the_validity() {
    let cs = ConnectionString::parse(
        "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=n;SharedAccessKey=k",
    )
    .unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_000);
    let header = cs.authorization("https://ns.servicebus.windows.net/q", now);
    assert!(
        header
            .expose_secret()
            .contains(&format!("&se={}&", 1_000 + SAS_VALIDITY.as_secs()))
    );
}

#[rstest]
#[case::key(
    "Endpoint=sb://NS.servicebus.windows.net/;SharedAccessKeyName=RootManage;SharedAccessKey=abc+/def=",
    "ns.servicebus.windows.net",
    Some("RootManage")
)]
#[case::keys_any_case_and_spaces(
    " endpoint = sb://ns.example.com/ ; sharedaccesskeyname=n ; SHAREDACCESSKEY=k ;",
    "ns.example.com",
    Some("n")
)]
#[case::with_port_and_entity(
    "Endpoint=sb://localhost:5671/;SharedAccessKeyName=n;SharedAccessKey=k;EntityPath=q",
    "localhost:5671",
    Some("n")
)]
#[case::sas(
    "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessSignature=SharedAccessSignature sr=a&sig=b&se=1&skn=c",
    "ns.servicebus.windows.net",
    None
)]
fn connection_string_parses(#[case] raw: &str, #[case] fqdn: &str, #[case] key_name: Option<&str>) {
    let cs = ConnectionString::parse(raw).unwrap();
    assert_eq!(cs.fqdn, fqdn);
    match (&cs.signer, key_name) {
        (Signer::Key { name, .. }, Some(want)) => assert_eq!(name, want),
        (Signer::Token(t), None) => {
            assert!(t.expose_secret().starts_with("SharedAccessSignature sr="))
        }
        _ => panic!("unexpected signer for {raw}"),
    }
}

#[test]
fn key_with_equals_signs_is_kept_whole() {
    let cs =
        ConnectionString::parse("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey=a=b==")
            .unwrap();
    let Signer::Key { key, .. } = cs.signer else {
        panic!("key signer")
    };
    assert_eq!(key.expose_secret(), "a=b==");
}

#[test]
fn shared_access_signature_is_sent_as_is() {
    let cs = ConnectionString::parse(
        "Endpoint=sb://h/;SharedAccessSignature=SharedAccessSignature sr=x&sig=y&se=9&skn=z",
    )
    .unwrap();
    assert_eq!(
        cs.authorization("https://h/q", SystemTime::now())
            .expose_secret(),
        "SharedAccessSignature sr=x&sig=y&se=9&skn=z"
    );
}

#[rstest]
#[case::no_endpoint("SharedAccessKeyName=n;SharedAccessKey=k", "no Endpoint")]
#[case::bad_scheme(
    "Endpoint=http://h/;SharedAccessKeyName=n;SharedAccessKey=k",
    "must start with sb://"
)]
#[case::empty_host(
    "Endpoint=sb:///;SharedAccessKeyName=n;SharedAccessKey=k",
    "no valid host"
)]
#[case::host_with_userinfo(
    "Endpoint=sb://u:p@h/;SharedAccessKeyName=n;SharedAccessKey=k",
    "no valid host"
)]
#[case::no_key(
    "Endpoint=sb://h/;SharedAccessKeyName=n",
    "needs SharedAccessKeyName and SharedAccessKey"
)]
#[case::garbage("not a connection string", "without '='")]
fn connection_string_errors_never_echo_it(#[case] raw: &str, #[case] message: &str) {
    let err = ConnectionString::parse(raw).expect_err("invalid");
    assert!(err.contains(message), "{err}");
    assert!(!err.contains("SharedAccessKey=k"));
    let cs =
        ConnectionString::parse("Endpoint=sb://h/;SharedAccessKeyName=n;SharedAccessKey=topsecret")
            .unwrap();
    assert!(!format!("{cs:?}").contains("topsecret"));
}

fn env(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[test]
fn workload_identity_prefers_pod_identity_over_env() {
    let e = env(&[
        ("AZURE_CLIENT_ID", "env-client"),
        ("AZURE_TENANT_ID", "env-tenant"),
        ("AZURE_FEDERATED_TOKEN_FILE", "/var/run/token"),
    ]);
    let pod = crate::PodIdentity {
        provider: "azure-workload".into(),
        identity_id: Some("pod-client".into()),
        ..Default::default()
    };
    let wi = WorkloadIdentity::resolve(&pod, &e).unwrap();
    assert_eq!(
        (wi.client_id.as_str(), wi.tenant_id.as_str()),
        ("pod-client", "env-tenant")
    );
    assert_eq!(
        wi.token_url(),
        "https://login.microsoftonline.com/env-tenant/oauth2/v2.0/token"
    );
    let pod = crate::PodIdentity {
        identity_authority_host: Some("https://127.0.0.1:9/".into()),
        ..pod
    };
    assert_eq!(
        WorkloadIdentity::resolve(&pod, &e).unwrap().token_url(),
        "https://127.0.0.1:9/env-tenant/oauth2/v2.0/token"
    );
}

#[rstest]
#[case::no_client(&[("AZURE_TENANT_ID", "t"), ("AZURE_FEDERATED_TOKEN_FILE", "f")], "no client id")]
#[case::no_tenant(&[("AZURE_CLIENT_ID", "c"), ("AZURE_FEDERATED_TOKEN_FILE", "f")], "no tenant id")]
#[case::no_token_file(&[("AZURE_CLIENT_ID", "c"), ("AZURE_TENANT_ID", "t")], "AZURE_FEDERATED_TOKEN_FILE")]
fn workload_identity_names_what_is_missing(#[case] vars: &[(&str, &str)], #[case] message: &str) {
    let pod = crate::PodIdentity {
        provider: "azure-workload".into(),
        ..Default::default()
    };
    assert!(
        WorkloadIdentity::resolve(&pod, &env(vars))
            .unwrap_err()
            .contains(message)
    );
}

#[test]
fn token_form_is_form_encoded_client_credentials() {
    let e = env(&[
        ("AZURE_CLIENT_ID", "c id"),
        ("AZURE_TENANT_ID", "t"),
        ("AZURE_FEDERATED_TOKEN_FILE", "f"),
    ]);
    let wi = WorkloadIdentity::resolve(&crate::PodIdentity::default(), &e).unwrap();
    let form = wi.token_form(&SecretString::from("a.b+c".to_owned()), SERVICE_BUS_SCOPE);
    assert_eq!(
        form.expose_secret(),
        "client_id=c+id&grant_type=client_credentials\
         &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
         &client_assertion=a.b%2Bc&scope=https%3A%2F%2Fservicebus.azure.net%2F%2F.default"
    );
}

#[rstest]
#[case::number(
    r#"{"access_token":"tok","expires_in":3599,"token_type":"Bearer"}"#,
    Some(3599)
)]
#[case::string(r#"{"access_token":"tok","expires_in":"3600"}"#, Some(3600))]
#[case::no_token(r#"{"expires_in":3600}"#, None)]
#[case::no_expiry(r#"{"access_token":"tok"}"#, None)]
#[case::not_json("<html/>", None)]
fn token_reply_parses(#[case] body: &str, #[case] expires: Option<u64>) {
    let got = parse_token_reply(body).ok().map(|(t, d)| {
        assert_eq!(t.expose_secret(), "tok");
        d.as_secs()
    });
    assert_eq!(got, expires);
}

#[test]
fn token_error_reports_only_the_code() {
    assert_eq!(
        token_error(
            r#"{"error":"invalid_client","error_description":"AADSTS700016 secret stuff"}"#
        ),
        "invalid_client"
    );
    assert_eq!(token_error("oops"), "unknown error");
}
