use super::*;
use serde_json::json;

fn store() -> Arc<Store> {
    Store::new(ClockHandle::real(), 100)
}

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}, "data": {"a": "1"}})
}

fn cms() -> GroupResource {
    GroupResource::new("", "configmaps")
}

#[test]
fn create_assigns_uid_timestamp_and_increasing_resource_versions() {
    let s = store();
    let a = s.create(&cms(), cm("a"), &WriteOptions::default()).unwrap();
    let b = s.create(&cms(), cm("b"), &WriteOptions::default()).unwrap();
    assert!(meta::uid(&a).is_some());
    assert!(meta::meta_str(&a, "creationTimestamp").is_some());
    let rv = |o: &Value| meta::resource_version(o).unwrap().parse::<u64>().unwrap();
    assert!(rv(&b) > rv(&a));
    let err = s
        .create(&cms(), cm("a"), &WriteOptions::default())
        .unwrap_err();
    assert_eq!((err.code, err.reason), (409, "AlreadyExists"));
}

#[test]
fn stale_update_conflicts_and_noop_update_keeps_the_version() {
    let s = store();
    let a = s.create(&cms(), cm("a"), &WriteOptions::default()).unwrap();
    let same = s
        .update(&cms(), a.clone(), &WriteOptions::default())
        .unwrap();
    assert_eq!(meta::resource_version(&same), meta::resource_version(&a));
    let mut changed = a.clone();
    changed["data"]["a"] = json!("2");
    s.update(&cms(), changed.clone(), &WriteOptions::default())
        .unwrap();
    let err = s
        .update(&cms(), changed, &WriteOptions::default())
        .unwrap_err();
    assert_eq!((err.code, err.reason), (409, "Conflict"));
}

#[test]
fn generation_bumps_on_spec_changes_only() {
    let s = store();
    let deploys = GroupResource::new("apps", "deployments");
    let d = json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": []}}}});
    let d = s.create(&deploys, d, &WriteOptions::default()).unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    let mut status = d.clone();
    status["status"] = json!({"replicas": 1});
    let d = s.update(&deploys, status, &WriteOptions::status()).unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    assert_eq!(d["status"]["replicas"], 1);
    let mut labelled = d.clone();
    labelled["metadata"]["labels"] = json!({"x": "y"});
    let d = s
        .update(&deploys, labelled, &WriteOptions::default())
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 1);
    let mut scaled = d.clone();
    scaled["spec"]["replicas"] = json!(3);
    scaled["status"] = json!({"replicas": 99});
    let d = s
        .update(&deploys, scaled, &WriteOptions::default())
        .unwrap();
    assert_eq!(d["metadata"]["generation"], 2);
    assert_eq!(
        d["status"]["replicas"], 1,
        "main-resource writes ignore status"
    );
}

#[test]
fn finalizers_hold_deletion_until_removed() {
    let s = store();
    let mut obj = cm("held");
    obj["metadata"]["finalizers"] = json!(["example.com/hold"]);
    s.create(&cms(), obj, &WriteOptions::default()).unwrap();
    let deleting = s
        .delete(&cms(), Some("default"), "held", &DeleteOptions::default())
        .unwrap();
    assert!(meta::is_deleting(&deleting));
    assert!(s.get(&cms(), Some("default"), "held").is_ok());
    let mut released = deleting;
    meta::remove_finalizer(&mut released, "example.com/hold");
    s.update(&cms(), released, &WriteOptions::default())
        .unwrap();
    assert_eq!(
        s.get(&cms(), Some("default"), "held").unwrap_err().code,
        404
    );
}

#[tokio::test]
async fn watch_replays_history_in_order_and_expires_after_compaction() {
    let s = store();
    let (_, rv) = s.list(&cms(), None);
    s.create(&cms(), cm("a"), &WriteOptions::default()).unwrap();
    s.delete(&cms(), Some("default"), "a", &DeleteOptions::default())
        .unwrap();
    let mut sub = s.watch(&cms(), Some("default"), Some(rv)).unwrap();
    assert_eq!(
        sub.next().await.unwrap().unwrap().event_type,
        EventType::Added
    );
    assert_eq!(
        sub.next().await.unwrap().unwrap().event_type,
        EventType::Deleted
    );
    s.compact();
    assert_eq!(sub.next().await.unwrap().unwrap_err().code, 410);
    assert_eq!(
        s.watch(&cms(), None, Some(rv)).unwrap_err().reason,
        "Expired"
    );
}

#[test]
fn creating_in_a_missing_namespace_is_not_found() {
    let s = store();
    let mut obj = cm("a");
    obj["metadata"]["namespace"] = json!("nowhere");
    let err = s.create(&cms(), obj, &WriteOptions::default()).unwrap_err();
    assert_eq!(err.message, "namespaces \"nowhere\" not found");
}

#[test]
fn core_events_with_generated_names_are_accepted() {
    let s = store();
    let event = json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "worker.17c9a4b2e1f0", "namespace": "default"},
        "involvedObject": {"kind": "HorizontalPodAutoscaler", "namespace": "default", "name": "worker", "uid": null},
        "reason": "SuccessfulRescale", "message": "New size: 4", "source": {"component": "horizontal-pod-autoscaler"},
        "count": 1, "type": "Normal", "eventTime": null, "reportingInstance": ""});
    let created = s
        .create(
            &GroupResource::new("", "events"),
            event,
            &WriteOptions::default(),
        )
        .unwrap();
    assert_eq!(created["reason"], "SuccessfulRescale");
}

#[test]
fn watching_from_a_future_version_is_a_timeout() {
    let s = store();
    let future = s.resource_version() + 10;
    let err = s.watch(&cms(), None, Some(future)).unwrap_err();
    assert_eq!((err.code, err.reason), (504, "Timeout"));
    assert_eq!(
        err.to_status()["details"]["causes"][0]["reason"],
        "ResourceVersionTooLarge"
    );
}

#[test]
fn system_namespaces_cannot_be_deleted() {
    let s = store();
    let namespaces = GroupResource::new("", "namespaces");
    let err = s
        .delete(&namespaces, None, "kube-system", &DeleteOptions::default())
        .unwrap_err();
    assert_eq!(
        (err.code, err.message.as_str()),
        (
            403,
            "namespaces \"kube-system\" is forbidden: this namespace may not be deleted"
        )
    );
}
