//! API-server semantics through kube-rs: discovery, pagination, dry run, patch types,
//! bookmarks, watch-list, selector transitions, metadata-only lists, CRD removal.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, PartialObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher::{self, Event};
use serde_json::json;
use tidescale_sandbox::{GroupResource, SandboxConfig, WriteOptions};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

fn install_widgets(env: &common::Env) {
    let crd: serde_json::Value = serde_yaml_ng::from_str(common::WIDGET_CRD).unwrap();
    let crds = GroupResource::new("apiextensions.k8s.io", "customresourcedefinitions");
    env.sandbox
        .store()
        .create(&crds, crd, &WriteOptions::default())
        .unwrap();
}

#[tokio::test]
async fn legacy_and_aggregated_discovery_list_installed_crds() {
    let env = common::start().await;
    install_widgets(&env);
    let client = env.client().await;
    for discovery in [
        kube::Discovery::new(client.clone()).run().await.unwrap(),
        kube::Discovery::new(client).run_aggregated().await.unwrap(),
    ] {
        let group = discovery
            .get("example.com")
            .expect("the CRD's group is discovered");
        let (resource, caps) = group.recommended_kind("Widget").expect("Widget is served");
        assert_eq!(resource.plural, "widgets");
        assert!(
            caps.subresources
                .iter()
                .any(|(r, _)| r.plural == "widgets/scale" || r.plural == "scale"),
            "{:?}",
            caps.subresources
        );
        assert!(
            discovery
                .get("apps")
                .unwrap()
                .recommended_kind("Deployment")
                .is_some()
        );
    }
}

#[tokio::test]
async fn lists_paginate_with_limit_and_continue() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("c{i}"), json!({})))
            .await
            .unwrap();
    }
    let mut names = vec![];
    let mut params = ListParams::default().limit(2);
    loop {
        let page = api.list(&params).await.unwrap();
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
    let selected = api
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .unwrap();
    assert_eq!(selected.items.len(), 1);
}

#[tokio::test]
async fn dry_run_validates_without_storing() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let created = api
        .create(
            &PostParams {
                dry_run: true,
                ..PostParams::default()
            },
            &cm("ghost", json!({})),
        )
        .await
        .unwrap();
    assert_eq!(created.metadata.name.as_deref(), Some("ghost"));
    assert!(api.get_opt("ghost").await.unwrap().is_none());
}

#[tokio::test]
async fn json_and_strategic_patches_edit_built_in_lists() {
    let env = common::start().await;
    let api: Api<Deployment> = Api::default_namespaced(env.client().await);
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "app", "image": "a:1", "env": [{"name": "A", "value": "1"}]},
            {"name": "side", "image": "s:1"}]}}}}))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    let smp = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}}}});
    let out = api
        .patch("web", &PatchParams::default(), &Patch::Strategic(smp))
        .await
        .unwrap();
    let containers = out.spec.unwrap().template.spec.unwrap().containers;
    assert_eq!(
        containers.len(),
        2,
        "strategic merge keeps the other container"
    );
    assert_eq!(
        containers[0].env.as_ref().unwrap().len(),
        2,
        "env merged by name"
    );
    let ops: json_patch::Patch =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]))
            .unwrap();
    let out = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(ops))
        .await
        .unwrap();
    assert_eq!(out.spec.unwrap().replicas, Some(4));
    assert_eq!(out.metadata.generation, Some(3));
    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/replicas", "value": 9}]))
            .unwrap();
    let err = api
        .patch("web", &PatchParams::default(), &Patch::<()>::Json(failing))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 422),
        "{err:?}"
    );
}

#[tokio::test]
async fn watches_get_bookmarks_when_allowed() {
    let env = common::start_with(SandboxConfig {
        bookmark_interval: Duration::from_millis(100),
        ..SandboxConfig::default()
    })
    .await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        matches!(first, WatchEvent::Bookmark(ref b) if b.metadata.resource_version == rv),
        "{first:?}"
    );
}

#[tokio::test]
async fn streaming_list_watchers_see_the_initial_snapshot_then_changes() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    api.create(&PostParams::default(), &cm("old", json!({})))
        .await
        .unwrap();
    let mut stream =
        watcher::watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut initial = vec![];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.try_next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::InitApply(o) => initial.push(o.metadata.name.unwrap()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["old"]);
    api.create(&PostParams::default(), &cm("new", json!({})))
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), stream.try_next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(next, Event::Apply(ref o) if o.metadata.name.as_deref() == Some("new")));
}

#[tokio::test]
async fn label_selector_watches_see_objects_leave_and_enter() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut stream = api
        .watch(&WatchParams::default().labels("team=a").timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("x", json!({"team": "b"})))
        .await
        .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "a"}}})),
    )
    .await
    .unwrap();
    api.patch(
        "x",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"team": "c"}}})),
    )
    .await
    .unwrap();
    let events: Vec<_> = stream.by_ref().take(2).try_collect().await.unwrap();
    assert!(matches!(events[0], WatchEvent::Added(_)), "{events:?}");
    assert!(matches!(events[1], WatchEvent::Deleted(_)), "{events:?}");
}

#[tokio::test]
async fn metadata_watchers_receive_partial_objects() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    api.create(&PostParams::default(), &cm("meta", json!({"a": "b"})))
        .await
        .unwrap();
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["a"], "b");
    let partial: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(env.client().await);
    let mut stream = watcher::watcher(partial, watcher::Config::default()).boxed();
    let seen = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(event)) = stream.next().await {
            if let Event::InitApply(o) | Event::Apply(o) = event {
                return o.metadata.name;
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(seen.as_deref(), Some("meta"));
}

#[tokio::test]
async fn deleting_a_crd_removes_its_objects_and_its_resource() {
    let env = common::start().await;
    env.apply(common::WIDGET_CRD, &[]).await;
    env.apply(
        "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {color: red}\n",
        &[],
    )
    .await;
    env.ok(&["delete", "crd", "widgets.example.com"]).await;
    assert!(
        env.sandbox
            .store()
            .registry()
            .resolve("example.com", "v1", "widgets")
            .is_none()
    );
    let out = env
        .kubectl(&[
            "get",
            "--raw",
            "/apis/example.com/v1/namespaces/default/widgets",
        ])
        .await;
    assert!(!out.status.success());
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    api.delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn lease_takeover_races_have_exactly_one_winner() {
    use k8s_openapi::api::coordination::v1::Lease;
    let env = common::start().await;
    let api: Api<Lease> = Api::namespaced(env.client().await, "kube-system");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "tidescale-leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2024-05-01T12:00:00.000000Z",
                 "renewTime": "2024-05-01T12:00:00.000000Z", "leaseTransitions": 0}})).unwrap();
    let observed = api.create(&PostParams::default(), &lease).await.unwrap();
    let attempt = |holder: &str| {
        let mut mine = observed.clone();
        let spec = mine.spec.as_mut().unwrap();
        spec.holder_identity = Some(holder.to_owned());
        spec.lease_transitions = Some(1);
        mine
    };
    let (for_b, for_c) = (attempt("b"), attempt("c"));
    let params = PostParams::default();
    let (b, c) = tokio::join!(
        api.replace("tidescale-leader", &params, &for_b),
        api.replace("tidescale-leader", &params, &for_c)
    );
    let outcomes = [b.is_ok(), c.is_ok()];
    assert_eq!(
        outcomes.iter().filter(|ok| **ok).count(),
        1,
        "exactly one candidate acquires the lease"
    );
    let loser = match (b, c) {
        (Err(e), _) | (_, Err(e)) => e,
        (Ok(_), Ok(_)) => unreachable!("checked above"),
    };
    assert!(
        matches!(loser, kube::Error::Api(ref s) if s.code == 409 && s.reason == "Conflict"),
        "{loser:?}"
    );
    let stored = env
        .sandbox
        .store()
        .get(
            &GroupResource::new("coordination.k8s.io", "leases"),
            Some("kube-system"),
            "tidescale-leader",
        )
        .unwrap();
    assert!(
        stored["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .ends_with(".000000Z"),
        "MicroTime keeps microseconds: {stored}"
    );
}

#[tokio::test]
async fn a_status_patch_carrying_a_stale_resource_version_conflicts_and_changes_nothing() {
    let env = common::start().await;
    install_widgets(&env);
    let resource = kube::discovery::ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<kube::api::DynamicObject> =
        Api::namespaced_with(env.client().await, "default", &resource);
    let widget = serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": "w"}, "spec": {"color": "red"}}))
    .unwrap();
    let snapshot = api.create(&PostParams::default(), &widget).await.unwrap();
    let stale = snapshot.metadata.resource_version.clone().unwrap();
    let params = PatchParams::default();
    let newer = api
        .patch_status(
            "w",
            &params,
            &Patch::Merge(json!({"status": {"replicas": 2}})),
        )
        .await
        .expect("a patch without a resourceVersion is unconditional");
    let conflict = |result: kube::Result<kube::api::DynamicObject>| matches!(result, Err(kube::Error::Api(ref s)) if s.code == 409 && s.reason == "Conflict");
    let merge = json!({"metadata": {"resourceVersion": stale}, "status": {"replicas": 5}});
    assert!(conflict(
        api.patch_status("w", &params, &Patch::Merge(merge)).await
    ));
    // A JSON patch that sets the version is a precondition too, as in kube-apiserver.
    let ops = json!([
        {"op": "replace", "path": "/metadata/resourceVersion", "value": stale},
        {"op": "replace", "path": "/status/replicas", "value": 7}
    ]);
    let ops: json_patch::Patch = serde_json::from_value(ops).unwrap();
    assert!(conflict(
        api.patch_status("w", &params, &Patch::Json::<()>(ops))
            .await
    ));
    let stored = api.get_status("w").await.unwrap();
    assert_eq!(stored.data["status"]["replicas"], 2, "nothing was written");
    assert_eq!(
        stored.metadata.resource_version,
        newer.metadata.resource_version
    );
    let current = json!({"metadata": {"resourceVersion": newer.metadata.resource_version},
        "status": {"replicas": 5}});
    let written = api
        .patch_status("w", &params, &Patch::Merge(current))
        .await
        .expect("the current resourceVersion passes");
    assert_eq!(written.data["status"]["replicas"], 5);
}
