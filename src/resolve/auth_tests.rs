//! Auth params resolve in KEDA's order, with KEDA's empty-string fallbacks.

use std::collections::BTreeMap;

use serde_json::json;

use super::super::ObjectMaps;
use super::*;

fn spec(value: serde_json::Value) -> TriggerAuthenticationSpec {
    serde_json::from_value(value).unwrap()
}

fn objects(absent: Lookup) -> ObjectMaps {
    let mut objects = ObjectMaps::new(absent);
    let data = BTreeMap::from([
        ("host".to_owned(), "amqp://from-secret".to_owned()),
        ("k".to_owned(), "s3cret".to_owned()),
    ]);
    objects
        .secrets
        .insert(("shop".into(), "rabbit".into()), data);
    let data = BTreeMap::from([("host".to_owned(), "amqp://from-cm".to_owned())]);
    objects
        .config_maps
        .insert(("shop".into(), "cm".into()), data);
    objects
}

fn pod() -> PodSpec {
    serde_json::from_value(json!({"containers": [{"name": "w", "env": [{"name": "HOST", "value": "amqp://from-env"}]}]})).unwrap()
}

fn ctx(pod: Option<&PodSpec>) -> AuthContext<'_> {
    AuthContext {
        namespace: "shop",
        cluster_scoped: false,
        target_namespace: "shop",
        target_pod: pod,
    }
}

fn known(auth: &ResolvedAuth, name: &str) -> Option<String> {
    auth.params.known().get(name).cloned()
}

#[test]
fn later_sources_overwrite_earlier_ones() {
    let spec = spec(json!({
        "env": [{"parameter": "host", "name": "HOST"}],
        "configMapTargetRef": [{"parameter": "host", "name": "cm", "key": "host"}],
        "secretTargetRef": [{"parameter": "host", "name": "rabbit", "key": "host"}]}));
    let pod = pod();
    let auth = resolve_auth(&spec, ctx(Some(&pod)), &objects(Lookup::Missing)).unwrap();
    assert_eq!(known(&auth, "host").as_deref(), Some("amqp://from-secret"));
    let env_only =
        resolve_auth(&spec_env_only(), ctx(Some(&pod)), &objects(Lookup::Missing)).unwrap();
    assert_eq!(known(&env_only, "host").as_deref(), Some("amqp://from-env"));
}

fn spec_env_only() -> TriggerAuthenticationSpec {
    spec(json!({"env": [{"parameter": "host", "name": "HOST", "containerName": "w"}]}))
}

#[test]
fn missing_objects_and_keys_give_empty_strings() {
    let spec = spec(json!({"secretTargetRef": [
        {"parameter": "a", "name": "nope", "key": "host"},
        {"parameter": "b", "name": "rabbit", "key": "nope"}],
        "env": [{"parameter": "c", "name": "NOPE"}]}));
    let pod = pod();
    let auth = resolve_auth(&spec, ctx(Some(&pod)), &objects(Lookup::Missing)).unwrap();
    for name in ["a", "b", "c"] {
        assert_eq!(known(&auth, name).as_deref(), Some(""), "{name}");
    }
}

#[test]
fn offline_unknowns_stay_unknown() {
    let spec = spec(
        json!({"secretTargetRef": [{"parameter": "host", "name": "elsewhere", "key": "host"}],
        "env": [{"parameter": "pw", "name": "PW"}],
        "hashiCorpVault": {"address": "https://vault", "authentication": "token", "secrets": [{"parameter": "token", "path": "p", "key": "k"}]},
        "boundServiceAccountToken": [{"parameter": "sa", "serviceAccountName": "x"}]}),
    );
    let auth = resolve_auth(&spec, ctx(None), &objects(Lookup::Unknown)).unwrap();
    assert_eq!(
        auth.params.unknown().into_iter().collect::<Vec<_>>(),
        ["host", "pw", "sa", "token"]
    );
    assert!(!auth.open);
}

#[test]
fn file_path_is_cluster_only_and_opens_the_params() {
    let spec = spec(
        json!({"filePath": "creds.json", "secretTargetRef": [{"parameter": "host", "name": "rabbit", "key": "host"}]}),
    );
    assert_eq!(
        resolve_auth(&spec, ctx(None), &objects(Lookup::Missing)).unwrap_err(),
        ResolveError::FilePathNotSupported
    );
    let cluster = AuthContext {
        cluster_scoped: true,
        ..ctx(None)
    };
    let auth = resolve_auth(&spec, cluster, &objects(Lookup::Missing)).unwrap();
    assert!(auth.open);
    assert!(
        auth.params.known().is_empty(),
        "the file replaces everything"
    );
}

#[test]
fn oauth2_sets_keda_parameter_names() {
    let spec = spec(
        json!({"oauth2": {"clientId": "app", "tokenUrl": "https://idp/token", "scopes": ["a", "b"],
        "tokenUrlParams": {"audience": "api://x y"},
        "clientSecret": {"valueFrom": {"secretKeyRef": {"name": "rabbit", "key": "k"}}}}}),
    );
    let auth = resolve_auth(&spec, ctx(None), &objects(Lookup::Missing)).unwrap();
    let params = auth.params.known();
    assert_eq!(params["oauthTokenURI"], "https://idp/token");
    assert_eq!(params["clientID"], "app");
    assert_eq!(params["clientSecret"], "s3cret");
    assert_eq!(params["scopes"], "a,b");
    assert_eq!(params["endpointParams"], "audience=api%3A%2F%2Fx+y");
}

#[test]
fn pod_identity_passes_through() {
    let spec = spec(json!({"podIdentity": {"provider": "azure-workload", "identityId": "id"}}));
    let auth = resolve_auth(&spec, ctx(None), &objects(Lookup::Missing)).unwrap();
    assert_eq!(
        auth.pod_identity.unwrap().identity_id.as_deref(),
        Some("id")
    );
}
