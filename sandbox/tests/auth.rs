//! Authentication (tokens, client certificates), RBAC enforcement, TokenReview and
//! SubjectAccessReview.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DynamicObject, PostParams};
use serde_json::json;
use tidescale_sandbox::Credentials;

const RBAC: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: default}
rules:
  - apiGroups: [""]
    resources: [configmaps]
    verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: reader, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects: [{kind: ServiceAccount, name: worker, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: aggregate}
aggregationRule:
  clusterRoleSelectors: [{matchLabels: {example.com/aggregate: "true"}}]
rules: []
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: scaler, labels: {example.com/aggregate: "true"}}
rules:
  - apiGroups: ["*"]
    resources: ["*/scale"]
    verbs: [get, update, patch]
  - apiGroups: [apps]
    resources: [deployments]
    verbs: [get]
  - nonResourceURLs: ["/metrics"]
    verbs: [get]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: devs-aggregate}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: aggregate}
subjects: [{kind: Group, name: devs, apiGroup: rbac.authorization.k8s.io}]
"#;

#[tokio::test]
async fn a_service_account_token_gets_exactly_its_role() {
    let env = common::start().await;
    env.apply(RBAC, &[]).await;
    let token = env.sandbox.service_account_token("default", "worker");
    let path = env.dir.path().join("worker.kubeconfig");
    env.sandbox
        .write_kubeconfig(&path, &Credentials::Token(token))
        .unwrap();
    let allowed = env.kubectl_with(&path, &["get", "configmaps"], None).await;
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let denied = env.kubectl_with(&path, &["get", "deployments"], None).await;
    let stderr = String::from_utf8_lossy(&denied.stderr);
    assert!(stderr.contains("deployments.apps is forbidden: User \"system:serviceaccount:default:worker\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"default\""), "{stderr}");
    let other_ns = env
        .kubectl_with(&path, &["-n", "kube-system", "get", "configmaps"], None)
        .await;
    assert!(!other_ns.status.success());
    let client = common::client_from(&env.sandbox.kubeconfig(&Credentials::Token(
        env.sandbox.service_account_token("default", "worker"),
    )))
    .await;
    let api: Api<ConfigMap> = Api::default_namespaced(client);
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "x"}})).unwrap();
    let err = api.create(&PostParams::default(), &cm).await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403 && s.reason == "Forbidden"),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_certificates_authenticate_and_aggregated_roles_apply() {
    let env = common::start().await;
    env.apply(RBAC, &[]).await;
    env.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {a: b}}\n  template: {metadata: {labels: {a: b}}}\n", &[]).await;
    let credentials = env
        .sandbox
        .issue_client_certificate("jane", &["devs"])
        .unwrap();
    let path = env.dir.path().join("jane.kubeconfig");
    env.sandbox.write_kubeconfig(&path, &credentials).unwrap();
    let scaled = env
        .kubectl_with(&path, &["scale", "deployment/web", "--replicas=3"], None)
        .await;
    assert!(
        scaled.status.success(),
        "{}",
        String::from_utf8_lossy(&scaled.stderr)
    );
    let metrics = env
        .kubectl_with(&path, &["get", "--raw", "/metrics"], None)
        .await;
    assert!(
        !String::from_utf8_lossy(&metrics.stderr).contains("Forbidden"),
        "nonResourceURLs grant the path"
    );
    let delete = env
        .kubectl_with(&path, &["delete", "deployment", "web"], None)
        .await;
    assert!(
        String::from_utf8_lossy(&delete.stderr)
            .contains("User \"jane\" cannot delete resource \"deployments\"")
    );
}

#[tokio::test]
async fn unknown_tokens_are_unauthorized() {
    let env = common::start().await;
    let path = env.dir.path().join("bad.kubeconfig");
    env.sandbox
        .write_kubeconfig(&path, &Credentials::Token("nope".into()))
        .unwrap();
    let out = env.kubectl_with(&path, &["get", "configmaps"], None).await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("provide credentials"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn create_review(
    client: &kube::Client,
    group: &str,
    plural: &str,
    kind: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let ar = kube::discovery::ApiResource {
        group: group.into(),
        version: "v1".into(),
        api_version: format!("{group}/v1"),
        kind: kind.into(),
        plural: plural.into(),
    };
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let obj: DynamicObject = serde_json::from_value(body).unwrap();
    let created = api.create(&PostParams::default(), &obj).await.unwrap();
    serde_json::to_value(created).unwrap()
}

#[tokio::test]
async fn token_and_subject_access_reviews_answer_for_sandbox_users() {
    let env = common::start().await;
    env.apply(RBAC, &[]).await;
    let client = env.client().await;
    let token = env.sandbox.service_account_token("default", "worker");
    let review = create_review(&client, "authentication.k8s.io", "tokenreviews", "TokenReview",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {"token": token}})).await;
    assert_eq!(review["status"]["authenticated"], true);
    assert_eq!(
        review["status"]["user"]["username"],
        "system:serviceaccount:default:worker"
    );
    let bad = create_review(&client, "authentication.k8s.io", "tokenreviews", "TokenReview",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {"token": "nope"}})).await;
    assert_eq!(bad["status"]["authenticated"], false);
    let sar = |verb: &str, resource: &str| {
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "metadata": {},
        "spec": {"user": "system:serviceaccount:default:worker", "groups": ["system:serviceaccounts", "system:authenticated"],
                 "resourceAttributes": {"namespace": "default", "verb": verb, "group": "", "resource": resource}}})
    };
    let yes = create_review(
        &client,
        "authorization.k8s.io",
        "subjectaccessreviews",
        "SubjectAccessReview",
        sar("list", "configmaps"),
    )
    .await;
    assert_eq!(yes["status"]["allowed"], true);
    let no = create_review(
        &client,
        "authorization.k8s.io",
        "subjectaccessreviews",
        "SubjectAccessReview",
        sar("delete", "configmaps"),
    )
    .await;
    assert_eq!(no["status"]["allowed"], false);
}

#[tokio::test]
async fn bootstrap_roles_let_an_extension_server_delegate_auth() {
    let env = common::start().await;
    env.apply(r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: adapter-auth-delegator}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:auth-delegator}
subjects: [{kind: ServiceAccount, name: adapter, namespace: default}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: adapter-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects: [{kind: ServiceAccount, name: adapter, namespace: default}]
"#, &[]).await;
    let client = common::client_from(&env.sandbox.kubeconfig(&Credentials::Token(
        env.sandbox.service_account_token("default", "adapter"),
    )))
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    assert!(cms.get("extension-apiserver-authentication").await.is_ok());
    let review = create_review(&client, "authentication.k8s.io", "tokenreviews", "TokenReview",
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "metadata": {}, "spec": {"token": "x"}})).await;
    assert_eq!(review["status"]["authenticated"], false);
    assert!(
        matches!(cms.get("other").await.unwrap_err(), kube::Error::Api(ref s) if s.code == 403)
    );
}
