//! ScaledObject status: conditions as KEDA sets them, and writes only when something changed
//! (design.md §4.3: no API writes in steady state).

use kube::api::{Api, Patch, PatchParams};

use super::target::within_api_timeout;
use crate::crd::names::{condition, reason};
use crate::crd::{Condition, ScaledObject, ScaledObjectStatus};
use crate::scaling::decision::ConditionChange;

/// The conditions KEDA initialises on a new object: Ready, Active and Fallback Unknown,
/// Paused False.
pub fn initial_conditions() -> Vec<Condition> {
    let unknown = |type_: &str| Condition {
        type_: type_.to_owned(),
        status: "Unknown".to_owned(),
        reason: Some(reason::UNKNOWN_STATE.to_owned()),
        message: None,
    };
    vec![
        unknown(condition::READY),
        unknown(condition::ACTIVE),
        unknown(condition::FALLBACK),
        Condition {
            type_: condition::PAUSED.to_owned(),
            status: "False".to_owned(),
            reason: Some(reason::SCALED_OBJECT_UNPAUSED.to_owned()),
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
        type_: type_.to_owned(),
        status: status.to_owned(),
        reason: Some(reason.to_owned()),
        message: Some(message.to_owned()),
    };
    match existing {
        Some(existing) => *existing = wanted,
        None => conditions.push(wanted),
    }
    true
}

/// Write `status` if it differs from what `so` carries. A merge patch of the whole status:
/// status is written by tidescale alone.
pub async fn write_if_changed(
    client: &kube::Client,
    so: &ScaledObject,
    status: &ScaledObjectStatus,
) -> Result<bool, kube::Error> {
    if so.status.as_ref() == Some(status) {
        return Ok(false);
    }
    let namespace = so.metadata.namespace.as_deref().unwrap_or_default();
    let name = so.metadata.name.as_deref().unwrap_or_default();
    let api: Api<ScaledObject> = Api::namespaced(client.clone(), namespace);
    let patch = Patch::Merge(serde_json::json!({ "status": status }));
    let params = PatchParams::default();
    let call = api.patch_status(name, &params, &patch);
    within_api_timeout(call).await.map(|_| true)
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
            .map(|c| (c.type_, c.status))
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
        assert!(
            set_condition(&mut conditions, "HPAActive", &READY),
            "a new type is added"
        );
    }
}
