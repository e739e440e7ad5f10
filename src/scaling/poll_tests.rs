//! The shortcut of steady polls ([`status_unchanged`]) against building the status.

use super::*;
use crate::controller::status::initial_conditions;

fn object(status: Option<ScaledObjectStatus>) -> ScaledObject {
    let mut so: ScaledObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
        "metadata": {"name": "orders", "namespace": "shop"},
        "spec": {"scaleTargetRef": {"name": "orders"}, "triggers": []}
    }))
    .expect("a ScaledObject");
    so.status = status;
    so
}

fn decision(active: bool) -> Decision {
    let state = object_state(&object(None), 1);
    let outcome = PollOutcome {
        active,
        error: false,
    };
    decide(&state, outcome, Timestamp::UNIX_EPOCH)
}

fn activity(active: bool) -> BTreeMap<String, TriggerActivityStatus> {
    BTreeMap::from([(
        "s0-queue".to_owned(),
        TriggerActivityStatus { is_active: active },
    )])
}

/// What the long way decides: build the status and compare.
fn built_unchanged(so: &ScaledObject, decision: &Decision, active: bool) -> bool {
    let mut status = next_status(so, decision, activity(active));
    let persisted = status.last_active_time.as_ref().map(|t| t.0);
    let transition = so.status.as_ref() != Some(&status);
    let interval = Duration::from_secs(75);
    status.last_active_time = to_write(persisted, None, transition, interval).map(Time);
    so.status.as_ref() == Some(&status)
}

#[test]
fn the_shortcut_agrees_with_building_the_status() {
    let interval = Duration::from_secs(75);
    let settled = |active: bool| {
        let so = object(Some(ScaledObjectStatus {
            conditions: initial_conditions(),
            ..ScaledObjectStatus::default()
        }));
        next_status(&so, &decision(active), activity(active))
    };
    let cases = [
        (object(None), true),
        (object(None), false),
        (object(Some(ScaledObjectStatus::default())), false),
        (object(Some(settled(false))), false),
        (object(Some(settled(false))), true),
        (object(Some(settled(true))), true),
        (object(Some(settled(true))), false),
    ];
    for (so, active) in cases {
        let decision = decision(active);
        let quick = status_unchanged(&so, &decision, &activity(active), None, interval);
        assert_eq!(
            quick,
            built_unchanged(&so, &decision, active),
            "status {:?}, active {active}",
            so.status
        );
    }
    assert!(status_unchanged(
        &object(Some(settled(true))),
        &decision(true),
        &activity(true),
        None,
        interval
    ));
}
