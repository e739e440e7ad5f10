//! The StatefulSet controller: pods named `<set>-<ordinal>`, created in order and removed
//! highest ordinal first. With the default `OrderedReady` policy one pod changes at a time and
//! only after its predecessors are Ready; `Parallel` creates and deletes all at once.
//!
//! Rolling updates of the template are not simulated (pods keep their first template);
//! scaling, which autoscaling exercises, is.

use serde_json::{Map, Value, json};

use super::events::EventRecorder;
use super::index::OwnerIndex;
use super::json::object_or_empty;
use super::pods::{self, PodName, stable_hash};
use super::replicaset::{count, desired_replicas, write_status};
use crate::store::{DeleteOptions, GroupResource, Store, meta};

/// The `statefulsets.apps` resource.
pub fn statefulsets() -> GroupResource {
    GroupResource::new("apps", "statefulsets")
}

fn ordinal(set: &str, pod: &Value) -> Option<usize> {
    meta::name(pod)
        .strip_prefix(set)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// Creates missing ordinals below `spec.replicas`, deletes those at or above it.
pub fn reconcile(store: &Store, events: &EventRecorder, index: &OwnerIndex, set: &Value) {
    if meta::is_deleting(set) {
        return;
    }
    let name = meta::name(set);
    let desired = desired_replicas(set);
    let parallel = set.pointer("/spec/podManagementPolicy") == Some(&json!("Parallel"));
    let owned = index.owned(set);
    let mut by_ordinal: Vec<(usize, &Value)> = owned
        .iter()
        .filter_map(|p| Some((ordinal(name, p)?, &**p)))
        .collect();
    by_ordinal.sort_by_key(|(o, _)| *o);
    // Scale down first, highest ordinal first; OrderedReady waits for each to vanish.
    let extra: Vec<&Value> = by_ordinal
        .iter()
        .rev()
        .filter(|(o, _)| *o >= desired)
        .map(|(_, p)| *p)
        .collect();
    if !extra.is_empty() {
        let batch = if parallel { extra.len() } else { 1 };
        for pod in extra
            .into_iter()
            .take(batch)
            .filter(|p| !meta::is_deleting(p))
        {
            let deleted = store.delete(
                &pods::pods(),
                meta::namespace(pod),
                meta::name(pod),
                &DeleteOptions::default(),
            );
            if deleted.is_ok() {
                let message = format!(
                    "delete Pod {} in StatefulSet {name} successful",
                    meta::name(pod)
                );
                events.record(store, set, false, "SuccessfulDelete", &message);
            }
        }
        return;
    }
    for o in 0..desired {
        match by_ordinal.iter().find(|(x, _)| *x == o) {
            Some((_, pod)) if !parallel && !pods::is_ready(pod) => return,
            Some(_) => {}
            None => {
                if !create_ordinal(store, events, set, o) || !parallel {
                    return;
                }
            }
        }
    }
}

/// Creates pod `<set>-<o>`; false if that failed (retried next tick).
fn create_ordinal(store: &Store, events: &EventRecorder, set: &Value, o: usize) -> bool {
    let name = meta::name(set);
    let template = set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let revision = format!("{name}-{}", stable_hash(&template));
    let pod_name = format!("{name}-{o}");
    let mut labels = Map::new();
    labels.insert(
        "statefulset.kubernetes.io/pod-name".to_owned(),
        json!(pod_name),
    );
    labels.insert(
        "apps.kubernetes.io/pod-index".to_owned(),
        json!(o.to_string()),
    );
    labels.insert("controller-revision-hash".to_owned(), json!(revision));
    match pods::create_from_template(store, set, PodName::Fixed(&pod_name), &template, &labels) {
        Ok(_) => {
            let message = format!("create Pod {pod_name} in StatefulSet {name} successful");
            events.record(store, set, false, "SuccessfulCreate", &message);
            true
        }
        Err(error) => {
            tracing::debug!(statefulset = name, %error, "pod creation deferred");
            false
        }
    }
}

/// Recomputes `status`. Returns whether some Ready pod is not yet available (inside
/// `minReadySeconds`), so that the status will change with time alone.
pub fn refresh_status(store: &Store, index: &OwnerIndex, set: &Value) -> bool {
    let now = store.clock().now();
    let min_ready = set
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (replicas, ready, available) = count(index.owned(set), min_ready, now);
    let template = set
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let revision = format!("{}-{}", meta::name(set), stable_hash(&template));
    let mut status = object_or_empty(set.get("status"));
    status["observedGeneration"] = set
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    status["replicas"] = json!(replicas);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["currentReplicas"] = json!(replicas);
    status["updatedReplicas"] = json!(replicas);
    status["currentRevision"] = json!(revision);
    status["updateRevision"] = json!(revision);
    status["collisionCount"] = json!(0);
    write_status(store, &statefulsets(), set, status);
    ready > available
}
