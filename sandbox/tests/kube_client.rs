//! kube-rs against the sandbox: CRUD, conflicts, watches, relists after 410 and restarts.

mod common;

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde_json::json;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

async fn next_named<S>(stream: &mut S, name: &str) -> bool
where
    S: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(event) = stream.next().await {
            if let Ok(Event::Apply(o) | Event::InitApply(o)) = event
                && o.metadata.name.as_deref() == Some(name)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false)
}

#[tokio::test]
async fn stale_updates_conflict_and_fresh_ones_succeed() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let created = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_owned(), "1".to_owned())].into());
    api.replace("a", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale.data = Some([("k".to_owned(), "2".to_owned())].into());
    let err = api
        .replace("a", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    let kube::Error::Api(status) = err else {
        panic!("expected an API error")
    };
    assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"));
    let err = api
        .create(&PostParams::default(), &cm("a"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.reason == "AlreadyExists"),
        "{err:?}"
    );
    let patched = api
        .patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "3");
    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert!(matches!(api.get("a").await.unwrap_err(), kube::Error::Api(ref s) if s.code == 404));
}

#[tokio::test]
async fn watch_events_arrive_in_resource_version_order() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let list = api.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    for name in ["a", "b", "c"] {
        api.create(&PostParams::default(), &cm(name)).await.unwrap();
    }
    api.delete("b", &DeleteParams::default()).await.unwrap();
    let wp = kube::api::WatchParams::default().timeout(5);
    let events: Vec<_> = api
        .watch(&wp, &rv)
        .await
        .unwrap()
        .take(4)
        .try_collect()
        .await
        .unwrap();
    let seen: Vec<(String, String)> = events
        .iter()
        .map(|e| match e {
            kube::api::WatchEvent::Added(o) => ("ADDED".into(), o.metadata.name.clone().unwrap()),
            kube::api::WatchEvent::Deleted(o) => {
                ("DELETED".into(), o.metadata.name.clone().unwrap())
            }
            other => (format!("{other:?}"), String::new()),
        })
        .collect();
    let expected = [
        ("ADDED", "a"),
        ("ADDED", "b"),
        ("ADDED", "c"),
        ("DELETED", "b"),
    ];
    assert_eq!(seen, expected.map(|(t, n)| (t.to_owned(), n.to_owned())));
}

#[tokio::test]
async fn watcher_relists_after_a_forced_410() {
    let env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    assert!(next_named(&mut stream, "before").await);
    env.sandbox.store().compact();
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    assert!(
        next_named(&mut stream, "after").await,
        "the watcher recovered from 410 Expired"
    );
    // A fresh watch from a compacted version gets the 410 as an ERROR event.
    let wp = kube::api::WatchParams::default().timeout(5);
    let mut old = api.watch(&wp, "1").await.unwrap().boxed();
    let first = old.next().await.unwrap().unwrap();
    assert!(
        matches!(first, kube::api::WatchEvent::Error(ref e) if e.code == 410),
        "{first:?}"
    );
}

#[tokio::test]
async fn watcher_recovers_from_a_sandbox_restart() {
    let mut env = common::start().await;
    let api: Api<ConfigMap> = Api::default_namespaced(env.client().await);
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .boxed();
    api.create(&PostParams::default(), &cm("one"))
        .await
        .unwrap();
    assert!(next_named(&mut stream, "one").await);
    let seen = api
        .get("one")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    api.create(&PostParams::default(), &cm("between"))
        .await
        .unwrap();
    env.sandbox.restart().await.unwrap();
    api.create(&PostParams::default(), &cm("two"))
        .await
        .unwrap();
    assert!(
        next_named(&mut stream, "two").await,
        "the watcher reconnected after the restart"
    );
    assert!(api.get("one").await.is_ok(), "objects survive a restart");
    // The restarted server forgot its watch cache: resuming from a version older than the
    // restart's is 410 (the client must relist).
    let wp = kube::api::WatchParams::default().timeout(5);
    let mut resumed = api.watch(&wp, &seen).await.unwrap().boxed();
    let first = resumed.next().await.unwrap().unwrap();
    assert!(
        matches!(first, kube::api::WatchEvent::Error(ref e) if e.code == 410),
        "{first:?}"
    );
}
