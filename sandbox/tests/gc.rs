//! Owner-reference garbage collection and finalizers, through kube-rs.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

async fn owner_and_dependents(api: &Api<ConfigMap>, owner: &str, n: usize) -> String {
    let owner_obj: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": owner}})).unwrap();
    let uid = api
        .create(&PostParams::default(), &owner_obj)
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    for i in 0..n {
        let dep: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("{owner}-dep-{i}"),
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner, "uid": uid, "blockOwnerDeletion": true}]}})).unwrap();
        api.create(&PostParams::default(), &dep).await.unwrap();
    }
    uid
}

fn exists(env: &common::Env, name: &str) -> bool {
    env.sandbox
        .store()
        .get(
            &tidescale_sandbox::GroupResource::new("", "configmaps"),
            Some("default"),
            name,
        )
        .is_ok()
}

#[tokio::test]
async fn background_deletion_collects_dependents_after_the_owner() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    owner_and_dependents(&api, "bg", 2).await;
    api.delete("bg", &DeleteParams::background()).await.unwrap();
    assert!(!exists(&env, "bg"));
    assert!(common::eventually(|| !exists(&env, "bg-dep-0") && !exists(&env, "bg-dep-1")).await);
}

#[tokio::test]
async fn foreground_deletion_removes_dependents_before_the_owner() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    owner_and_dependents(&api, "fg", 2).await;
    let answer = api.delete("fg", &DeleteParams::foreground()).await.unwrap();
    let owner = answer.left().expect("the owner is returned while it waits");
    assert!(owner.metadata.deletion_timestamp.is_some());
    assert!(
        owner
            .metadata
            .finalizers
            .unwrap()
            .contains(&"foregroundDeletion".to_owned())
    );
    assert!(common::eventually(|| !exists(&env, "fg")).await);
    assert!(!exists(&env, "fg-dep-0") && !exists(&env, "fg-dep-1"));
}

#[tokio::test]
async fn orphan_deletion_keeps_dependents_without_the_owner_reference() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    owner_and_dependents(&api, "or", 1).await;
    api.delete("or", &DeleteParams::orphan()).await.unwrap();
    assert!(common::eventually(|| !exists(&env, "or")).await);
    let dep = api.get("or-dep-0").await.unwrap();
    assert!(dep.metadata.owner_references.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn finalizers_block_deletion_until_removed() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
    )
    .unwrap();
    api.create(&PostParams::default(), &held).await.unwrap();
    api.delete("held", &DeleteParams::default()).await.unwrap();
    let waiting = api.get("held").await.unwrap();
    assert!(waiting.metadata.deletion_timestamp.is_some());
    let err = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["example.com/hold", "x/y"]}})),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(matches!(api.get("held").await.unwrap_err(), kube::Error::Api(ref s) if s.code == 404));
}
