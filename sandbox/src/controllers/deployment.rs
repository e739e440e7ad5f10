//! The Deployment controller: one ReplicaSet per pod template, named
//! `<deployment>-<pod-template-hash>`, and the Deployment's status (`spec/kubernetes.md` §5.9,
//! §5.11).
//!
//! Simplification, stated because users will notice: a template change is rolled out by giving
//! the new ReplicaSet all replicas and scaling the old ones to zero in the same step (closer to
//! `Recreate` than to `RollingUpdate`). Scaling, which is what autoscaling exercises, behaves
//! exactly like a real cluster: the current ReplicaSet follows `spec.replicas`.

use serde_json::{Value, json};

use super::events::EventRecorder;
use super::index::OwnerIndex;
use super::json::{object_or_empty, set_in};
use super::pods::{controller_ref, stable_hash};
use super::replicaset::{self, desired_replicas, replicasets, write_status};
use crate::clock::format_time;
use crate::store::{GroupResource, Store, WriteOptions, meta};

/// The label (and ReplicaSet name suffix) identifying a pod template.
pub const TEMPLATE_HASH_LABEL: &str = "pod-template-hash";
/// Revision annotation kube-controller-manager puts on Deployments and ReplicaSets.
const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";

/// The `deployments.apps` resource.
pub fn deployments() -> GroupResource {
    GroupResource::new("apps", "deployments")
}

/// The ReplicaSet the Deployment's current template should run in.
fn new_replicaset(deploy: &Value, hash: &str, revision: usize) -> Value {
    let name = format!("{}-{hash}", meta::name(deploy));
    let mut template = deploy
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    set_in(
        &mut template,
        &["metadata", "labels", TEMPLATE_HASH_LABEL],
        json!(hash),
    );
    let mut selector = deploy
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    set_in(
        &mut selector,
        &["matchLabels", TEMPLATE_HASH_LABEL],
        json!(hash),
    );
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": name, "namespace": meta::namespace(deploy),
                     "labels": template["metadata"]["labels"],
                     "annotations": {REVISION_ANNOTATION: revision.to_string()},
                     "ownerReferences": [controller_ref(deploy)]},
        "spec": {"replicas": desired_replicas(deploy), "selector": selector, "template": template,
                 "minReadySeconds": deploy.pointer("/spec/minReadySeconds").cloned().unwrap_or(json!(0))},
    })
}

/// Makes the current ReplicaSet carry `spec.replicas` and scales older ones to zero.
pub fn reconcile(store: &Store, events: &EventRecorder, sets: &OwnerIndex, deploy: &Value) {
    if meta::is_deleting(deploy) {
        return;
    }
    let template = deploy
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let hash = stable_hash(&template);
    let owned = sets.owned(deploy);
    let current_name = format!("{}-{hash}", meta::name(deploy));
    let desired = desired_replicas(deploy);
    if !owned.iter().any(|rs| meta::name(rs) == current_name) {
        let rs = new_replicaset(deploy, &hash, owned.len() + 1);
        match store.create(&replicasets(), rs, &WriteOptions::default()) {
            Ok(_) => scaled_event(store, events, deploy, &current_name, 0, desired),
            Err(error) => {
                tracing::warn!(deployment = meta::name(deploy), %error, "replicaset creation failed")
            }
        }
    }
    for rs in owned {
        let want = if meta::name(rs) == current_name {
            desired
        } else {
            0
        };
        if desired_replicas(rs) != want {
            let mut updated = Value::clone(rs);
            set_in(&mut updated, &["spec", "replicas"], json!(want));
            match store.update(&replicasets(), updated, &WriteOptions::default()) {
                Ok(_) => scaled_event(
                    store,
                    events,
                    deploy,
                    meta::name(rs),
                    desired_replicas(rs),
                    want,
                ),
                Err(error) => {
                    tracing::debug!(replicaset = meta::name(rs), %error, "replicaset scale skipped")
                }
            }
        }
    }
}

/// `ScalingReplicaSet`, worded like kube-controller-manager ≥ 1.30.
fn scaled_event(
    store: &Store,
    events: &EventRecorder,
    deploy: &Value,
    rs: &str,
    from: usize,
    to: usize,
) {
    let direction = if to > from { "up" } else { "down" };
    let message = format!("Scaled {direction} replica set {rs} from {from} to {to}");
    events.record(store, deploy, false, "ScalingReplicaSet", &message);
}

/// Pod counts over all of a Deployment's ReplicaSets.
#[derive(Debug, Default)]
struct Counts {
    replicas: usize,
    ready: usize,
    available: usize,
    updated: usize,
}

/// The ReplicaSets and pods a status pass reads.
#[derive(Debug)]
pub struct Owned<'a> {
    /// ReplicaSets by controlling Deployment.
    pub sets: &'a OwnerIndex,
    /// Pods by controlling ReplicaSet.
    pub pods: &'a OwnerIndex,
}

fn counts(store: &Store, owned: &Owned<'_>, deploy: &Value, current_name: &str) -> Counts {
    let now = store.clock().now();
    let min_ready = deploy
        .pointer("/spec/minReadySeconds")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let mut c = Counts::default();
    for rs in owned.sets.owned(deploy) {
        let (r, ready, available) = replicaset::count(owned.pods.owned(rs), min_ready, now);
        c.replicas += r;
        c.ready += ready;
        c.available += available;
        if meta::name(rs) == current_name {
            c.updated = r;
        }
    }
    c
}

/// Recomputes the Deployment's status from its ReplicaSets' pods. Returns whether some Ready pod
/// is not yet available (inside `minReadySeconds`), so that the status will change with time
/// alone.
pub fn refresh_status(store: &Store, owned: &Owned<'_>, deploy: &Value) -> bool {
    let now = store.clock().now();
    let template = deploy
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let current_name = format!("{}-{}", meta::name(deploy), stable_hash(&template));
    let c = counts(store, owned, deploy, &current_name);
    let desired = desired_replicas(deploy);
    let mut status = object_or_empty(deploy.get("status"));
    status["observedGeneration"] = deploy
        .pointer("/metadata/generation")
        .cloned()
        .unwrap_or(json!(1));
    status["replicas"] = json!(c.replicas);
    status["updatedReplicas"] = json!(c.updated);
    status["readyReplicas"] = json!(c.ready);
    status["availableReplicas"] = json!(c.available);
    status["unavailableReplicas"] = json!(desired.saturating_sub(c.available));
    // maxUnavailable defaults to 25 % rounded down (§5.9).
    let min_available = desired - desired / 4;
    let available = if c.available >= min_available {
        (
            true,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.".to_owned(),
        )
    } else {
        (
            false,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.".to_owned(),
        )
    };
    let progressing = if c.updated == desired && c.available >= desired {
        (
            true,
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{current_name}\" has successfully progressed."),
        )
    } else {
        (
            true,
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{current_name}\" is progressing."),
        )
    };
    status["conditions"] = json!([
        condition(&status, "Available", available, now),
        condition(&status, "Progressing", progressing, now),
    ]);
    write_status(store, &deployments(), deploy, status);
    c.ready > c.available
}

/// A Deployment condition, keeping `lastTransitionTime` unless the status flips and
/// `lastUpdateTime` unless the reason or message changes.
fn condition(
    status: &Value,
    kind: &str,
    (value, reason, message): (bool, &str, String),
    now: jiff::Timestamp,
) -> Value {
    let text = if value { "True" } else { "False" };
    let now = format_time(now);
    let old = status["conditions"]
        .as_array()
        .and_then(|l| l.iter().find(|c| c["type"] == kind));
    let transition = old
        .filter(|c| c["status"] == text)
        .map_or(json!(now), |c| c["lastTransitionTime"].clone());
    let update = old
        .filter(|c| {
            c["status"] == text && c["reason"] == reason && c["message"] == message.as_str()
        })
        .map_or(json!(now), |c| c["lastUpdateTime"].clone());
    json!({"type": kind, "status": text, "lastUpdateTime": update, "lastTransitionTime": transition,
           "reason": reason, "message": message})
}
