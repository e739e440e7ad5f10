//! The ReplicaSet controller: keeps `spec.replicas` live pods and reports them in `status`
//! (`spec/kubernetes.md` §5.9, §5.11).
//!
//! Scale-down deletes the cheapest pods first, like kube-controller-manager: Pending before
//! not-Ready before Ready, and within a class the newest (most recently Ready) first. Deleted
//! pods terminate through the simulated kubelet ([`super::pods`]) and stop counting at once.

use std::cmp::Reverse;
use std::sync::Arc;

use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::events::EventRecorder;
use super::index::OwnerIndex;
use super::json::object_or_empty;
use super::pods::{self, PodName, Stage};
use crate::clock::{add, parse_time};
use crate::store::{DeleteOptions, GroupResource, Store, WriteOptions, meta};

/// The `replicasets.apps` resource.
pub fn replicasets() -> GroupResource {
    GroupResource::new("apps", "replicasets")
}

/// `spec.replicas` with the API default of 1.
pub fn desired_replicas(obj: &Value) -> usize {
    obj.pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .map_or(1, |r| usize::try_from(r).unwrap_or(usize::MAX))
}

/// Creates or deletes pods until `spec.replicas` are active.
pub fn reconcile(store: &Store, events: &EventRecorder, index: &OwnerIndex, rs: &Value) {
    if meta::is_deleting(rs) {
        return;
    }
    let name = meta::name(rs);
    let active: Vec<&Value> = index
        .owned(rs)
        .iter()
        .map(|p| &**p)
        .filter(|p| pods::is_active(p))
        .collect();
    let desired = desired_replicas(rs);
    let template = rs
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    for _ in active.len()..desired {
        match pods::create_from_template(store, rs, PodName::Generate(name), &template, &Map::new())
        {
            Ok(pod) => {
                let message = format!("Created pod: {}", meta::name(&pod));
                events.record(store, rs, false, "SuccessfulCreate", &message);
            }
            Err(error) => {
                tracing::warn!(replicaset = name, %error, "pod creation failed");
                return;
            }
        }
    }
    if active.len() > desired {
        let mut victims = active;
        victims.sort_by_key(|p| (pods::stage(p), Reverse(recency(p))));
        for pod in victims.iter().take(victims.len() - desired) {
            let ns = meta::namespace(pod);
            if let Err(error) = store.delete(
                &pods::pods(),
                ns,
                meta::name(pod),
                &DeleteOptions::default(),
            ) {
                tracing::debug!(pod = meta::name(pod), %error, "pod deletion skipped");
                continue;
            }
            let message = format!("Deleted pod: {}", meta::name(pod));
            events.record(store, rs, false, "SuccessfulDelete", &message);
        }
    }
}

/// Ready pods sort by when they became Ready, the others by creation.
fn recency(pod: &Value) -> Option<Timestamp> {
    let created = pod
        .pointer("/metadata/creationTimestamp")
        .and_then(Value::as_str)
        .and_then(parse_time);
    match pods::stage(pod) {
        Stage::Ready => pods::ready_since(pod).or(created),
        _ => created,
    }
}

/// Counts the replicas-type status fields over `pods` (`minReadySeconds` for availability).
pub fn count(
    pods_list: &[Arc<Value>],
    min_ready_seconds: u64,
    now: Timestamp,
) -> (usize, usize, usize) {
    let active: Vec<&Arc<Value>> = pods_list.iter().filter(|p| pods::is_active(p)).collect();
    let ready = active.iter().filter(|p| pods::is_ready(p)).count();
    let min_ready = std::time::Duration::from_secs(min_ready_seconds);
    let available = active
        .iter()
        .filter(|p| pods::ready_since(p).is_some_and(|t| add(t, min_ready) <= now))
        .count();
    (active.len(), ready, available)
}

/// Recomputes `status` from the pods. Returns whether some Ready pod is not yet available
/// (inside `minReadySeconds`), so that the status will change with time alone.
pub fn refresh_status(store: &Store, index: &OwnerIndex, rs: &Value) -> bool {
    let now = store.clock().now();
    let owned = index.owned(rs);
    let min_ready = rs
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let (replicas, ready, available) = count(owned, min_ready, now);
    let mut status = object_or_empty(rs.get("status"));
    status["replicas"] = json!(replicas);
    status["fullyLabeledReplicas"] = json!(replicas);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["observedGeneration"] = rs
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    write_status(store, &replicasets(), rs, status);
    ready > available
}

/// Writes `status` through `/status` if it changed.
pub fn write_status(store: &Store, gr: &GroupResource, obj: &Value, status: Value) {
    if obj.get("status") == Some(&status) {
        return;
    }
    let mut updated = obj.clone();
    updated["status"] = status;
    if let Err(error) = store.update(gr, updated, &WriteOptions::status()) {
        tracing::debug!(object = meta::name(obj), %error, "status update skipped; retried next tick");
    }
}
