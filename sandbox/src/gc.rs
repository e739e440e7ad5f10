//! The garbage collector: owner references, foreground/orphan deletion, namespace teardown.
//!
//! kube-controller-manager's garbage collector and namespace controller, reduced to what a
//! single process with a full view of the store needs. The task follows every store event:
//! - an object removed for good → its dependents whose owners are now all gone are deleted
//!   (background cascade); dangling references to it are dropped from the others;
//! - an object waiting with the `foregroundDeletion` finalizer → its dependents are deleted
//!   (foreground), and the finalizer is removed once none are left;
//! - an object waiting with the `orphan` finalizer → its dependents lose their owner reference,
//!   then the finalizer is removed;
//! - a terminating namespace → everything in it is deleted, then `spec.finalizers` is cleared,
//!   which lets the store remove the namespace.
//!
//! Work is driven by events only; scans are full-store because the sandbox is small.

use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::store::{
    DeleteOptions, EventType, FOREGROUND_FINALIZER, GroupResource, ORPHAN_FINALIZER, Propagation,
    Store, WatchEvent, meta,
};

/// Runs until `shutdown` is cancelled.
pub async fn run(store: Arc<Store>, shutdown: CancellationToken) {
    // Catch up with work left over from before a restart.
    for (gr, obj) in store.all_objects() {
        if meta::is_deleting(&obj) {
            process_deleting(&store, &gr, &obj);
        }
    }
    let mut sub = store.watch_everything();
    loop {
        let next = tokio::select! {
            () = shutdown.cancelled() => return,
            next = sub.next() => next,
        };
        match next {
            Some(Ok(event)) => handle(&store, &event),
            // Missed events (lagging or compaction): rescan everything and resubscribe.
            Some(Err(_)) => {
                sub = store.watch_everything();
                for (gr, obj) in store.all_objects() {
                    if meta::is_deleting(&obj) {
                        process_deleting(&store, &gr, &obj);
                    }
                }
            }
            None => return,
        }
    }
}

fn handle(store: &Store, event: &WatchEvent) {
    match event.event_type {
        EventType::Deleted => {
            cascade(store, &event.object);
            // Owners waiting for this dependent, and a namespace waiting to empty.
            for owner in meta::owner_references(&event.object) {
                if let Some((gr, obj)) =
                    find_by_uid(store, owner["uid"].as_str().unwrap_or_default())
                {
                    process_deleting(store, &gr, &obj);
                }
            }
            if let Some(ns) = event.namespace() {
                let namespaces = GroupResource::new("", "namespaces");
                if let Ok(obj) = store.get(&namespaces, None, ns) {
                    process_deleting(store, &namespaces, &obj);
                }
            }
        }
        _ if meta::is_deleting(&event.object) => {
            process_deleting(store, &event.resource, &event.object)
        }
        _ => {}
    }
}

fn find_by_uid(store: &Store, uid: &str) -> Option<(GroupResource, Value)> {
    store
        .all_objects()
        .into_iter()
        .find(|(_, o)| meta::uid(o) == Some(uid))
}

fn dependents(store: &Store, uid: &str) -> Vec<(GroupResource, Value)> {
    store
        .all_objects()
        .into_iter()
        .filter(|(_, o)| meta::owner_references(o).iter().any(|r| r["uid"] == uid))
        .collect()
}

fn delete(store: &Store, gr: &GroupResource, obj: &Value, propagation: Propagation) {
    let opts = DeleteOptions {
        propagation: Some(propagation),
        ..DeleteOptions::default()
    };
    // Already gone or already deleting: both fine for a collector.
    let _ = store.delete(gr, meta::namespace(obj), meta::name(obj), &opts);
}

fn drop_owner(store: &Store, gr: &GroupResource, obj: &Value, uid: &str) {
    let _ = store.mutate(gr, meta::namespace(obj), meta::name(obj), |o| {
        let Some(refs) = o
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        else {
            return false;
        };
        let before = refs.len();
        refs.retain(|r| r["uid"] != uid);
        if refs.is_empty() {
            meta::metadata_mut(o).remove("ownerReferences");
        }
        before > 0
    });
}

/// Background cascade after an owner is gone.
fn cascade(store: &Store, owner: &Value) {
    let Some(uid) = meta::uid(owner) else { return };
    for (gr, dep) in dependents(store, uid) {
        let other_owner_alive = meta::owner_references(&dep)
            .iter()
            .filter(|r| r["uid"] != uid)
            .any(|r| find_by_uid(store, r["uid"].as_str().unwrap_or_default()).is_some());
        if other_owner_alive {
            drop_owner(store, &gr, &dep, uid);
        } else {
            delete(store, &gr, &dep, Propagation::Background);
        }
    }
}

fn remove_finalizer(store: &Store, gr: &GroupResource, obj: &Value, finalizer: &str) {
    let _ = store.mutate(gr, meta::namespace(obj), meta::name(obj), |o| {
        let had = meta::finalizers(o).iter().any(|f| f == finalizer);
        meta::remove_finalizer(o, finalizer);
        had
    });
}

fn process_deleting(store: &Store, gr: &GroupResource, obj: &Value) {
    if !meta::is_deleting(obj) {
        return;
    }
    let uid = meta::uid(obj).unwrap_or_default();
    let finalizers = meta::finalizers(obj);
    if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
        for (dgr, dep) in dependents(store, uid) {
            drop_owner(store, &dgr, &dep, uid);
        }
        remove_finalizer(store, gr, obj, ORPHAN_FINALIZER);
    }
    if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
        let deps = dependents(store, uid);
        if deps.is_empty() {
            remove_finalizer(store, gr, obj, FOREGROUND_FINALIZER);
        }
        for (dgr, dep) in deps {
            delete(store, &dgr, &dep, Propagation::Foreground);
        }
    }
    if gr.group.is_empty() && gr.resource == "namespaces" {
        finish_namespace(store, meta::name(obj));
    }
}

/// Deletes everything in a terminating namespace; clears its finalizer once it is empty.
fn finish_namespace(store: &Store, ns: &str) {
    let contents: Vec<(GroupResource, Value)> = store
        .all_objects()
        .into_iter()
        .filter(|(_, o)| meta::namespace(o) == Some(ns))
        .collect();
    if contents.is_empty() {
        let namespaces = GroupResource::new("", "namespaces");
        let _ = store.mutate(&namespaces, None, ns, |o| {
            o["spec"]["finalizers"] = json!([]);
            true
        });
        return;
    }
    for (gr, obj) in contents {
        if !meta::is_deleting(&obj) {
            delete(store, &gr, &obj, Propagation::Background);
        }
    }
}
