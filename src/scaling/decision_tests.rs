//! Every row of the decision table (`reference/keda.md` §2.5), as table tests in virtual time.

use std::time::Duration;

use k8s_openapi::jiff::{Timestamp, ToSpan};
use rstest::rstest;

use super::*;

fn t(seconds: i64) -> Timestamp {
    Timestamp::UNIX_EPOCH + seconds.seconds()
}

/// An object created at t=0 with KEDA's defaults (min 0, cooldown 300 s), at `current` replicas.
fn object(current: i32) -> ObjectState {
    ObjectState {
        current_replicas: current,
        min_replicas: 0,
        idle_replicas: None,
        cooldown: Duration::from_secs(300),
        initial_cooldown: Duration::ZERO,
        created: t(0),
        last_active: None,
        paused_scale_in: false,
        paused_scale_out: false,
        force_activation: false,
        fallback_replicas: None,
        has_fallback: false,
    }
}

const ACTIVE_OK: PollOutcome = PollOutcome {
    active: true,
    error: false,
};
const ACTIVE_ERR: PollOutcome = PollOutcome {
    active: true,
    error: true,
};
const IDLE_OK: PollOutcome = PollOutcome {
    active: false,
    error: false,
};
const IDLE_ERR: PollOutcome = PollOutcome {
    active: false,
    error: true,
};

fn scale(to: i32, reason: ScaleReason) -> Option<ScaleChange> {
    Some(ScaleChange { to, reason })
}

#[rstest]
#[case::activation_from_zero(object(0), ACTIVE_OK, 1000, scale(1, ScaleReason::Activated))]
#[case::activation_to_min(ObjectState { min_replicas: 3, ..object(0) }, ACTIVE_OK, 1000, scale(3, ScaleReason::Activated))]
#[case::activation_from_idle(ObjectState { min_replicas: 2, idle_replicas: Some(0), ..object(0) }, ACTIVE_OK, 1000, scale(2, ScaleReason::Activated))]
#[case::activation_from_nonzero_idle(ObjectState { min_replicas: 3, idle_replicas: Some(1), ..object(1) }, ACTIVE_OK, 1000, scale(3, ScaleReason::Activated))]
#[case::active_and_running_leaves_it_to_hpa(object(4), ACTIVE_OK, 1000, None)]
#[case::active_with_error_still_activates(
    object(0),
    ACTIVE_ERR,
    1000,
    scale(1, ScaleReason::Activated)
)]
#[case::force_activation(ObjectState { force_activation: true, ..object(0) }, IDLE_OK, 1000, scale(1, ScaleReason::Activated))]
#[case::paused_scale_out_blocks_activation(ObjectState { paused_scale_out: true, ..object(0) }, ACTIVE_OK, 1000, None)]
#[case::cooldown_not_over(ObjectState { last_active: Some(t(900)), ..object(3) }, IDLE_OK, 1000, None)]
#[case::cooldown_over(ObjectState { last_active: Some(t(600)), ..object(3) }, IDLE_OK, 1000, scale(0, ScaleReason::Deactivated))]
#[case::cooldown_boundary_is_exclusive(ObjectState { last_active: Some(t(700)), ..object(3) }, IDLE_OK, 1000, None)]
#[case::never_active_no_initial_cooldown(object(3), IDLE_OK, 1, scale(0, ScaleReason::Deactivated))]
#[case::initial_cooldown_holds(ObjectState { initial_cooldown: Duration::from_secs(120), ..object(3) }, IDLE_OK, 100, None)]
#[case::initial_cooldown_over(ObjectState { initial_cooldown: Duration::from_secs(120), ..object(3) }, IDLE_OK, 121, scale(0, ScaleReason::Deactivated))]
#[case::scale_in_to_idle(ObjectState { min_replicas: 2, idle_replicas: Some(1), last_active: Some(t(0)), ..object(4) }, IDLE_OK, 1000, scale(1, ScaleReason::Deactivated))]
#[case::at_idle_stays(ObjectState { min_replicas: 2, idle_replicas: Some(1), ..object(1) }, IDLE_OK, 1000, None)]
#[case::min_floor_without_idle(ObjectState { min_replicas: 2, ..object(1) }, IDLE_OK, 1000, scale(2, ScaleReason::ToMinimum))]
#[case::min_above_zero_no_scale_in(ObjectState { min_replicas: 2, last_active: Some(t(0)), ..object(5) }, IDLE_OK, 1000, None)]
#[case::paused_scale_in_blocks_deactivation(ObjectState { paused_scale_in: true, last_active: Some(t(0)), ..object(3) }, IDLE_OK, 1000, None)]
#[case::already_at_zero(object(0), IDLE_OK, 1000, None)]
#[case::error_never_scales_in(ObjectState { last_active: Some(t(0)), ..object(3) }, IDLE_ERR, 1000, None)]
#[case::error_still_raises_to_min(ObjectState { min_replicas: 2, ..object(1) }, IDLE_ERR, 1000, scale(2, ScaleReason::ToMinimum))]
#[case::fallback_at_zero_scales_out(ObjectState { has_fallback: true, fallback_replicas: Some(4), ..object(0) }, IDLE_ERR, 1000, scale(4, ScaleReason::Fallback))]
#[case::fallback_below_threshold_waits(ObjectState { has_fallback: true, ..object(0) }, IDLE_ERR, 1000, None)]
#[case::fallback_running_left_to_hpa(ObjectState { has_fallback: true, fallback_replicas: Some(4), ..object(2) }, IDLE_ERR, 1000, None)]
#[case::fallback_paused_scale_out(ObjectState { has_fallback: true, fallback_replicas: Some(4), paused_scale_out: true, ..object(0) }, IDLE_ERR, 1000, None)]
fn decision_table(
    #[case] state: ObjectState,
    #[case] poll: PollOutcome,
    #[case] now: i64,
    #[case] expected: Option<ScaleChange>,
) {
    assert_eq!(decide(&state, poll, t(now)).scale, expected);
}

#[rstest]
#[case::active(
    object(2),
    ACTIVE_OK,
    Some(reason::SCALER_ACTIVE),
    Some(reason::SCALED_OBJECT_READY),
    true
)]
#[case::active_partial_error(
    object(2),
    ACTIVE_ERR,
    Some(reason::SCALER_ACTIVE),
    Some(reason::PARTIAL_TRIGGER_ERROR),
    false
)]
#[case::activated_with_error_keeps_ready(
    object(0),
    ACTIVE_ERR,
    Some(reason::SCALER_ACTIVE),
    None,
    true
)]
#[case::inactive(
    object(0),
    IDLE_OK,
    Some(reason::SCALER_NOT_ACTIVE),
    Some(reason::SCALED_OBJECT_READY),
    false
)]
#[case::cooling_down(ObjectState { last_active: Some(t(900)), ..object(2) }, IDLE_OK, Some(reason::SCALER_COOLDOWN), Some(reason::SCALED_OBJECT_READY), false)]
#[case::error_without_fallback(
    object(2),
    IDLE_ERR,
    Some(reason::SCALER_NOT_ACTIVE),
    Some(reason::TRIGGER_ERROR),
    false
)]
#[case::error_with_fallback_changes_nothing(ObjectState { has_fallback: true, ..object(2) }, IDLE_ERR, None, None, false)]
fn conditions_and_last_active_time(
    #[case] state: ObjectState,
    #[case] poll: PollOutcome,
    #[case] active: Option<&str>,
    #[case] ready: Option<&str>,
    #[case] touch: bool,
) {
    let decision = decide(&state, poll, t(1000));
    assert_eq!(decision.active.map(|c| c.reason), active);
    assert_eq!(decision.ready.map(|c| c.reason), ready);
    assert_eq!(decision.touch_last_active, touch);
}

#[test]
fn scale_events_use_keda_reasons() {
    assert_eq!(
        ScaleReason::Activated.event_reason(),
        Some("KEDAScaleTargetActivated")
    );
    assert_eq!(
        ScaleReason::Deactivated.event_reason(),
        Some("KEDAScaleTargetDeactivated")
    );
    assert_eq!(ScaleReason::ToMinimum.event_reason(), None);
}

#[test]
fn future_timestamps_count_as_no_time_elapsed() {
    let state = ObjectState {
        last_active: Some(t(5000)),
        ..object(3)
    };
    assert_eq!(decide(&state, IDLE_OK, t(1000)).scale, None);
}
