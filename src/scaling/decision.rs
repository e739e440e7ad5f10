//! What to do after a poll: KEDA's `RequestScale` decision table (`reference/keda.md` §2.5).
//!
//! tidescale scales a workload between zero (or `idleReplicaCount`) and `minReplicaCount`
//! itself; the HPA handles 1↔N. Each poll yields whether any trigger is active and whether any
//! failed; together with the object's spec and status this decides one of: scale up from
//! zero/idle, scale in to zero/idle after the cooldown, raise to the minimum, or nothing — and
//! which Active/Ready conditions and Events follow.

use std::time::Duration;

use k8s_openapi::jiff::Timestamp;

use crate::crd::names::{event, reason};

/// The parts of a ScaledObject (spec, status, annotations) a decision reads.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectState {
    /// Replicas the scale target has now.
    pub current_replicas: i32,
    /// `spec.minReplicaCount`.
    pub min_replicas: i32,
    /// `spec.idleReplicaCount`.
    pub idle_replicas: Option<i32>,
    /// `spec.cooldownPeriod`.
    pub cooldown: Duration,
    /// `spec.initialCooldownPeriod`.
    pub initial_cooldown: Duration,
    /// `metadata.creationTimestamp`.
    pub created: Timestamp,
    /// `status.lastActiveTime`.
    pub last_active: Option<Timestamp>,
    /// `autoscaling.keda.sh/paused-scale-in` is set: never scale in to zero/idle.
    pub paused_scale_in: bool,
    /// `autoscaling.keda.sh/paused-scale-out` is set: never scale out from zero/idle.
    pub paused_scale_out: bool,
    /// `autoscaling.keda.sh/force-activation` is set: active whatever the triggers say.
    pub force_activation: bool,
    /// Replicas fallback wants right now: `Some` while a metric is past its failure threshold
    /// (see [`crate::scaling::fallback`]), `None` otherwise or without `spec.fallback`.
    pub fallback_replicas: Option<i32>,
    /// `spec.fallback` is configured.
    pub has_fallback: bool,
}

/// What one poll of all triggers found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollOutcome {
    /// Any trigger (or the composite metric) is active.
    pub active: bool,
    /// Any trigger failed.
    pub error: bool,
}

/// A condition to set: status, reason and message as KEDA words them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionChange {
    /// `True`, `False` or `Unknown`.
    pub status: &'static str,
    /// KEDA's reason.
    pub reason: &'static str,
    /// KEDA's message.
    pub message: &'static str,
}

/// Why the scale target is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleReason {
    /// Up from zero (or idle) because a trigger is active (`KEDAScaleTargetActivated`).
    Activated,
    /// Down to zero (or idle) after the cooldown (`KEDAScaleTargetDeactivated`).
    Deactivated,
    /// Up to `minReplicaCount`, which the target was below.
    ToMinimum,
    /// Out from zero to fallback replicas because metrics keep failing.
    Fallback,
}

impl ScaleReason {
    /// The Event reason recorded when the scale succeeds, if KEDA records one.
    pub fn event_reason(self) -> Option<&'static str> {
        match self {
            ScaleReason::Activated | ScaleReason::Fallback => Some(event::SCALE_TARGET_ACTIVATED),
            ScaleReason::Deactivated => Some(event::SCALE_TARGET_DEACTIVATED),
            ScaleReason::ToMinimum => None,
        }
    }
}

/// A write to the scale target's `/scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleChange {
    /// The new replica count.
    pub to: i32,
    /// Why.
    pub reason: ScaleReason,
}

/// The outcome of one decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Replicas to write, if any (written once per transition: never equal to the current).
    pub scale: Option<ScaleChange>,
    /// Set `status.lastActiveTime` to now.
    pub touch_last_active: bool,
    /// The Active condition, when this poll changes it.
    pub active: Option<ConditionChange>,
    /// The Ready condition, when this poll changes it.
    pub ready: Option<ConditionChange>,
}

const ACTIVE: ConditionChange = ConditionChange {
    status: "True",
    reason: reason::SCALER_ACTIVE,
    message: "Scaling is performed because triggers are active",
};
const NOT_ACTIVE: ConditionChange = ConditionChange {
    status: "False",
    reason: reason::SCALER_NOT_ACTIVE,
    message: "Scaling is not performed because triggers are not active",
};
const COOLDOWN: ConditionChange = ConditionChange {
    status: "False",
    reason: reason::SCALER_COOLDOWN,
    message: "Scaler cooling down because triggers are not active",
};
const READY: ConditionChange = ConditionChange {
    status: "True",
    reason: reason::SCALED_OBJECT_READY,
    message: "ScaledObject is defined correctly and is ready for scaling",
};
const PARTIAL_ERROR: ConditionChange = ConditionChange {
    status: "Unknown",
    reason: reason::PARTIAL_TRIGGER_ERROR,
    message: "Some triggers defined in ScaledObject are not working correctly",
};
const TRIGGER_ERROR: ConditionChange = ConditionChange {
    status: "False",
    reason: reason::TRIGGER_ERROR,
    message: "Triggers defined in ScaledObject are not working correctly",
};

/// Decide what one poll means for the object.
pub fn decide(state: &ObjectState, poll: PollOutcome, now: Timestamp) -> Decision {
    let active = poll.active || state.force_activation;
    if active {
        decide_active(state, poll)
    } else {
        decide_inactive(state, poll, now)
    }
}

fn decide_active(state: &ObjectState, poll: PollOutcome) -> Decision {
    let below_idle_floor =
        state.idle_replicas.is_some() && state.current_replicas < state.min_replicas;
    let mut decision = Decision {
        scale: None,
        touch_last_active: true,
        active: Some(ACTIVE),
        ready: None,
    };
    if state.current_replicas == 0 || below_idle_floor {
        if !state.paused_scale_out {
            decision.scale = changed(state, state.min_replicas.max(1), ScaleReason::Activated);
        }
        decision.ready = (!poll.error).then_some(READY);
    } else if poll.error {
        // As KEDA: a partial failure marks Ready Unknown and does not refresh lastActiveTime.
        decision.ready = Some(PARTIAL_ERROR);
        decision.touch_last_active = false;
    } else {
        decision.ready = Some(READY);
    }
    decision
}

fn decide_inactive(state: &ObjectState, poll: PollOutcome, now: Timestamp) -> Decision {
    if poll.error {
        return decide_failing(state);
    }
    let mut decision = Decision {
        scale: None,
        touch_last_active: false,
        active: Some(NOT_ACTIVE),
        ready: Some(READY),
    };
    let above_idle = state
        .idle_replicas
        .is_some_and(|idle| state.current_replicas > idle);
    let scaled_out_without_min = state.current_replicas > 0 && state.min_replicas == 0;
    if above_idle || scaled_out_without_min {
        scale_in(state, now, &mut decision);
    } else {
        decision.scale = raise_to_minimum(state);
    }
    decision
}

/// No trigger is active and at least one failed.
///
/// Deliberately safer than KEDA, which scales in after the cooldown when a failing object has
/// no fallback (KEDA #3065: an outage of the metrics backend scaled workloads down at peak):
/// tidescale never scales in because of an error. With fallback, Ready and Active stay as they
/// are (the HPA serves fallback replicas), and at zero — where the HPA is disabled — the loop
/// scales out to the fallback replicas itself, as KEDA does since #7244.
fn decide_failing(state: &ObjectState) -> Decision {
    if !state.has_fallback {
        let scale = raise_to_minimum(state);
        return Decision {
            scale,
            touch_last_active: false,
            active: Some(NOT_ACTIVE),
            ready: Some(TRIGGER_ERROR),
        };
    }
    let mut decision = Decision {
        scale: None,
        touch_last_active: false,
        active: None,
        ready: None,
    };
    if let Some(replicas) = state.fallback_replicas
        && state.current_replicas == 0
        && !state.paused_scale_out
    {
        decision.scale = changed(state, replicas, ScaleReason::Fallback);
    }
    decision
}

/// Without idle replicas, a target below `minReplicaCount` is raised to it.
fn raise_to_minimum(state: &ObjectState) -> Option<ScaleChange> {
    if state.idle_replicas.is_none() && state.current_replicas < state.min_replicas {
        changed(state, state.min_replicas, ScaleReason::ToMinimum)
    } else {
        None
    }
}

/// `scaleToZeroOrIdle`: after the cooldown (or the initial cooldown, before any activity),
/// scale to the idle replicas, else to the minimum.
fn scale_in(state: &ObjectState, now: Timestamp, decision: &mut Decision) {
    if state.paused_scale_in {
        return;
    }
    let cooled_down = match state.last_active {
        None => elapsed_since(state.created, now) > state.initial_cooldown,
        Some(last_active) => elapsed_since(last_active, now) > state.cooldown,
    };
    if cooled_down {
        let to = state.idle_replicas.unwrap_or(state.min_replicas);
        decision.scale = changed(state, to, ScaleReason::Deactivated);
    } else {
        decision.active = Some(COOLDOWN);
    }
}

fn changed(state: &ObjectState, to: i32, reason: ScaleReason) -> Option<ScaleChange> {
    (to != state.current_replicas).then_some(ScaleChange { to, reason })
}

/// Time from `then` to `now`; zero when `then` is in the future (clock skew).
fn elapsed_since(then: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(now.duration_since(then)).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
