//! ScaledObject status: conditions as KEDA sets them, and writes only when something changed
//! (design.md §4.3: no API writes in steady state).

use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::atomic::{AtomicU64, Ordering};

use kube::api::{Api, Patch, PatchParams};

use super::target::within_api_timeout;
use crate::crd::names::{condition, reason};
use crate::crd::{Condition, ScaledObject, ScaledObjectStatus};
use crate::scaling::decision::ConditionChange;

/// The conditions KEDA initialises on a new object: Ready, Active and Fallback Unknown,
/// Paused False.
pub fn initial_conditions() -> Vec<Condition> {
    let unknown = |type_: &str| Condition {
        type_: type_.into(),
        status: "Unknown".into(),
        reason: Some(reason::UNKNOWN_STATE.into()),
        message: None,
    };
    vec![
        unknown(condition::READY),
        unknown(condition::ACTIVE),
        unknown(condition::FALLBACK),
        Condition {
            type_: condition::PAUSED.into(),
            status: "False".into(),
            reason: Some(reason::SCALED_OBJECT_UNPAUSED.into()),
            message: None,
        },
    ]
}

/// Set condition `type_`; returns whether anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    change: &ConditionChange,
) -> bool {
    set_condition_to(
        conditions,
        type_,
        change.status,
        change.reason,
        change.message,
    )
}

/// Whether condition `type_` is already as `change` would set it.
pub fn has_condition(conditions: &[Condition], type_: &str, change: &ConditionChange) -> bool {
    conditions.iter().any(|c| {
        c.type_ == type_
            && c.status == change.status
            && c.reason.as_deref() == Some(change.reason)
            && c.message.as_deref() == Some(change.message)
    })
}

/// Set condition `type_` to `status`, `reason` and `message`; returns whether anything changed.
pub fn set_condition_to(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> bool {
    let existing = conditions.iter_mut().find(|c| c.type_ == type_);
    // Every poll sets Active: compare before building anything (no allocation when unchanged).
    if let Some(existing) = &existing
        && existing.status == status
        && existing.reason.as_deref() == Some(reason)
        && existing.message.as_deref() == Some(message)
    {
        return false;
    }
    let wanted = Condition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
    };
    match existing {
        Some(existing) => *existing = wanted,
        None => conditions.push(wanted),
    }
    true
}

/// Write `status` if it differs from what `so` carries, whatever was written since `so` was
/// read: for the reconciler, whose writes are never retried by a later pass (a reconcile runs
/// again only on a change), so a write must not fail because a poll wrote in between.
///
/// The merge patch carries only the status fields that differ from `so`'s (`null` for one
/// removed): a snapshot older than a poll's write then cannot undo that poll's `lastActiveTime`,
/// `triggersActivity` or `health`. A changed `conditions` list is sent whole (merge patches
/// replace lists); a poll sets Active again on its next pass.
pub async fn write_if_changed(
    client: &kube::Client,
    so: &ScaledObject,
    status: &ScaledObjectStatus,
) -> Result<bool, kube::Error> {
    let Some(changed) = changed_fields(so.status.as_ref(), status) else {
        return Ok(false);
    };
    patch_status(client, so, serde_json::json!({ "status": changed }))
        .await
        .map(|_| true)
}

/// What a [`write_if_current`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWrite {
    /// `so` already carried this status: nothing was sent.
    Unchanged,
    /// Written.
    Written,
    /// Someone wrote the object after `so` was read (409 Conflict): nothing was written.
    Stale,
}

/// Write `status` only over the very object `so` is a snapshot of: the merge patch carries
/// `so`'s `metadata.resourceVersion` as a precondition (spec/kubernetes.md §5.5), so the API
/// server answers 409 when anyone wrote the object since. For the poll loop, which writes the
/// whole status computed from its cached snapshot: without the precondition a stale snapshot
/// would undo what the reconciler just wrote (the renamed `hpaName`), and nothing would put it
/// back. A [`StatusWrite::Stale`] write is not an error: the next poll recomputes from the
/// fresh object.
pub async fn write_if_current(
    client: &kube::Client,
    so: &ScaledObject,
    status: &ScaledObjectStatus,
) -> Result<StatusWrite, kube::Error> {
    if so.status.as_ref() == Some(status) {
        return Ok(StatusWrite::Unchanged);
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": so.metadata.resource_version},
        "status": status,
    });
    match patch_status(client, so, patch).await {
        Ok(()) => Ok(StatusWrite::Written),
        Err(kube::Error::Api(response)) if response.code == 409 => Ok(StatusWrite::Stale),
        Err(error) => Err(error),
    }
}

/// The last resourceVersions of an object known to be out of date: a status or marks were
/// written over them (by a poll or the reconciler), or a write over them was refused (409).
/// While the watch cache still shows such a version, a poll's write with it as precondition can
/// only be refused: it is not sent. On a cold start of 10,000 objects, where the watch lags the
/// writes by seconds, those doomed writes were ~4 of the ~7 status requests per object.
///
/// A version once superseded stays so, so any remembered one is safe to skip. Kept as hashes
/// of the versions (32 bytes per object); a collision only delays a write to the next poll that
/// sees a newer version.
#[derive(Debug, Default)]
pub struct SupersededVersion([AtomicU64; 4]);

impl SupersededVersion {
    /// `so`'s version is out of date (the last four marked are remembered).
    pub fn mark(&self, so: &ScaledObject) {
        let hash = version_hash(so);
        if hash == 0 || self.0[0].load(Ordering::Relaxed) == hash {
            return;
        }
        // Shift the older ones down; a race only forgets a hint.
        for i in (1..self.0.len()).rev() {
            self.0[i].store(self.0[i - 1].load(Ordering::Relaxed), Ordering::Relaxed);
        }
        self.0[0].store(hash, Ordering::Relaxed);
    }

    /// Whether `so` is a version known to be out of date.
    pub fn is(&self, so: &ScaledObject) -> bool {
        let hash = version_hash(so);
        hash != 0
            && self
                .0
                .iter()
                .any(|slot| slot.load(Ordering::Relaxed) == hash)
    }
}

/// Never 0 (the "nothing known" value) for an object that has a version.
fn version_hash(so: &ScaledObject) -> u64 {
    match so.metadata.resource_version.as_deref() {
        Some(version) => BuildHasherDefault::<DefaultHasher>::default().hash_one(version) | 1,
        None => 0,
    }
}

/// Merge-patch `so`'s status subresource with `patch`, bounded by the API timeout.
async fn patch_status(
    client: &kube::Client,
    so: &ScaledObject,
    patch: serde_json::Value,
) -> Result<(), kube::Error> {
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let name = so.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ScaledObject> = Api::namespaced(client.clone(), namespace);
    let patch = Patch::Merge(patch);
    let params = PatchParams::default();
    within_api_timeout(api.patch_status(name, &params, &patch))
        .await
        .map(|_| ())
}

/// The top-level fields of `new` that differ from `old`, `null` for those `new` lacks; `None`
/// when nothing differs.
fn changed_fields(
    old: Option<&ScaledObjectStatus>,
    new: &ScaledObjectStatus,
) -> Option<serde_json::Map<String, serde_json::Value>> {
    let as_map = |status: Option<&ScaledObjectStatus>| match status.map(serde_json::to_value) {
        Some(Ok(serde_json::Value::Object(map))) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(old), as_map(Some(new)));
    let mut changed: serde_json::Map<_, _> = new
        .iter()
        .filter(|(key, value)| old.get(*key) != Some(*value))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    for key in old.keys().filter(|key| !new.contains_key(*key)) {
        changed.insert(key.clone(), serde_json::Value::Null);
    }
    (!changed.is_empty()).then_some(changed)
}

/// `so`'s status to build on: its current one, with KEDA's initial conditions when it has none.
pub fn current_status(so: &ScaledObject) -> ScaledObjectStatus {
    let mut status = so.status.clone().unwrap_or_default();
    if status.conditions.is_empty() {
        status.conditions = initial_conditions();
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    const READY: ConditionChange = ConditionChange {
        status: "True",
        reason: "ScaledObjectReady",
        message: "ok",
    };

    #[test]
    fn new_objects_get_keda_initial_conditions() {
        let types: Vec<(String, String)> = initial_conditions()
            .into_iter()
            .map(|c| (c.type_.to_string(), c.status.to_string()))
            .collect();
        let expected = [
            ("Ready", "Unknown"),
            ("Active", "Unknown"),
            ("Fallback", "Unknown"),
            ("Paused", "False"),
        ];
        assert_eq!(types, expected.map(|(t, s)| (t.to_owned(), s.to_owned())));
    }

    #[test]
    fn setting_the_same_condition_twice_changes_nothing() {
        let mut conditions = initial_conditions();
        assert!(set_condition(&mut conditions, "Ready", &READY));
        assert!(!set_condition(&mut conditions, "Ready", &READY));
        assert_eq!(conditions.iter().filter(|c| c.type_ == "Ready").count(), 1);
        assert!(has_condition(&conditions, "Ready", &READY));
        assert!(!has_condition(&conditions, "Active", &READY));
        assert!(
            set_condition(&mut conditions, "HPAActive", &READY),
            "a new type is added"
        );
    }

    #[test]
    fn only_the_marked_version_is_superseded() {
        let unversioned: ScaledObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "so", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"name": "app"}, "triggers": []}
        }))
        .expect("a ScaledObject");
        let at = |version: &str| {
            let mut so = unversioned.clone();
            so.metadata.resource_version = Some(version.to_owned());
            so
        };
        let superseded = SupersededVersion::default();
        assert!(!superseded.is(&at("7")), "nothing is known at first");
        superseded.mark(&at("7"));
        assert!(superseded.is(&at("7")));
        assert!(!superseded.is(&at("8")), "the next version is written to");
        for version in ["8", "9", "10"] {
            superseded.mark(&at(version));
        }
        let kept = ["7", "8", "9", "10"];
        assert!(kept.iter().all(|v| superseded.is(&at(v))), "four are kept");
        superseded.mark(&at("11"));
        assert!(!superseded.is(&at("7")), "the oldest is forgotten");
        assert!(superseded.is(&at("8")));
        assert!(!superseded.is(&unversioned));
    }

    #[test]
    fn the_reconcilers_patch_holds_only_the_fields_it_changed() {
        let old = ScaledObjectStatus {
            hpa_name: Some("keda-hpa-orders".into()),
            paused_replica_count: Some(3),
            triggers_types: Some("rabbitmq".into()),
            ..ScaledObjectStatus::default()
        };
        let mut new = old.clone();
        assert_eq!(changed_fields(Some(&old), &new), None, "nothing to send");
        new.hpa_name = Some("orders-hpa".into());
        new.paused_replica_count = None;
        let patch = changed_fields(Some(&old), &new).expect("a change");
        assert_eq!(
            serde_json::Value::Object(patch),
            serde_json::json!({"hpaName": "orders-hpa", "pausedReplicaCount": null}),
            "a field the poll loop owns (lastActiveTime, triggersActivity) is never resent"
        );
        let first = changed_fields(None, &new).expect("a new status");
        assert_eq!(first.len(), 2, "{first:?}");
    }
}
