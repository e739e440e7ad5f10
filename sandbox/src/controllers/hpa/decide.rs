//! One HPA reconcile as a pure function: `spec/kubernetes.md` §3.2 steps 2–6 given the scale
//! that was read and the metrics that were fetched.
//!
//! The controller does the I/O in between: [`plan`] says whether metrics are needed, [`decide`]
//! computes the desired count, conditions, events and `currentMetrics`, and after writing
//! `/scale` the controller reports the outcome with [`finish_rescale`]. [`status_json`] renders
//! the status. Nothing here reads a clock: `now` is an input, so table tests replay exact
//! timelines.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::conditions::{ConditionType, Conditions, Reason};
use super::metrics::{Combined, MetricOutcome, combine};
use super::normalize::{self, BehaviorRules, History, Recommendation};
use super::replicas::Tolerance;
use super::spec::{HpaSpec, Rules};
use crate::clock::format_time;

/// kube-controller-manager's HPA flags (§3.1).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `--horizontal-pod-autoscaler-sync-period`.
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-tolerance`.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-downscale-stabilization`.
    pub downscale_stabilization: Duration,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_readiness_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
            downscale_stabilization: Duration::from_secs(300),
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Settings {
    /// The tolerance for an HPA: per-direction overrides from `spec.behavior` (§3.4,
    /// `HPAConfigurableTolerance`, on by default since 1.35) else the global flag.
    pub fn tolerance_for(&self, spec: &HpaSpec) -> Tolerance {
        let global = Tolerance::symmetric(self.tolerance);
        let Some(rules) = self.rules_for(spec) else {
            return global;
        };
        Tolerance {
            up: rules.up.tolerance.unwrap_or(global.up),
            down: rules.down.tolerance.unwrap_or(global.down),
        }
    }

    /// Behavior rules after API defaulting, `None` for the legacy path.
    pub fn rules_for(&self, spec: &HpaSpec) -> Option<BehaviorRules> {
        let b = spec.behavior.as_ref()?;
        let down_window = i64::try_from(self.downscale_stabilization.as_secs()).unwrap_or(i64::MAX);
        Some(BehaviorRules {
            up: Rules::resolve(b.scale_up.as_ref(), true, 0),
            down: Rules::resolve(b.scale_down.as_ref(), false, down_window),
        })
    }

    /// Timings for the CPU readiness rules.
    pub fn cpu(&self, now: Timestamp) -> super::replicas::CpuReadiness {
        super::replicas::CpuReadiness {
            now,
            initialization: signed(self.cpu_initialization_period),
            initial_delay: signed(self.initial_readiness_delay),
        }
    }
}

/// What §3.2 step 4 decides before any metric is fetched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// 4a: target at zero, scaling disabled.
    Disabled,
    /// 4b/4c: clamp without metrics.
    Clamp {
        /// Replica count to apply.
        desired: i32,
        /// Rescale reason.
        reason: &'static str,
    },
    /// 4d: fetch metrics.
    Metrics,
}

/// §3.2 step 4 branch selection.
pub fn plan(spec: &HpaSpec, current: i32) -> Plan {
    let min = spec.min();
    if current == 0 && min != 0 {
        Plan::Disabled
    } else if current > spec.max_replicas {
        Plan::Clamp {
            desired: spec.max_replicas,
            reason: "Current number of replicas above Spec.MaxReplicas",
        }
    } else if current < min {
        Plan::Clamp {
            desired: min,
            reason: "Current number of replicas below Spec.MinReplicas",
        }
    } else {
        Plan::Metrics
    }
}

/// What the controller learnt about metrics this cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetricsPhase {
    /// Plan was not [`Plan::Metrics`].
    NotComputed,
    /// `scale.status.selector` is empty.
    MissingSelector,
    /// `scale.status.selector` does not parse.
    BadSelector(String),
    /// One outcome per `spec.metrics[i]`.
    Evaluated(Vec<MetricOutcome>),
}

/// An Event to record on the HPA (`source.component: horizontal-pod-autoscaler`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Event reason.
    pub reason: String,
    /// Event message.
    pub message: String,
}

fn warning(reason: &str, message: String) -> EventRecord {
    EventRecord {
        warning: true,
        reason: reason.to_owned(),
        message,
    }
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Replica count to apply (or `None` when this cycle must not touch `desiredReplicas`).
    pub desired: Option<i32>,
    /// `/scale` must be written.
    pub rescale: bool,
    /// Rescale reason for events.
    pub reason: String,
    /// `status.currentMetrics` (`None` = null).
    pub current_metrics: Option<Vec<Value>>,
    /// Events to record.
    pub events: Vec<EventRecord>,
}

impl Decision {
    /// No change: keep `current`, no metrics status.
    fn keep(current: i32, events: Vec<EventRecord>) -> Self {
        Self {
            desired: Some(current),
            rescale: false,
            reason: String::new(),
            current_metrics: None,
            events,
        }
    }
}

/// Inputs of one cycle.
#[derive(Debug, Clone, Copy)]
pub struct Cycle<'a> {
    /// Evaluation time.
    pub now: Timestamp,
    /// The HPA spec.
    pub spec: &'a HpaSpec,
    /// Controller flags.
    pub settings: &'a Settings,
    /// `scale.spec.replicas`.
    pub current: i32,
}

/// §3.2 step 1 failure: record it and stop.
pub fn scale_failed(conditions: &mut Conditions, error: &str, now: Timestamp) -> Vec<EventRecord> {
    conditions.set(
        ConditionType::AbleToScale,
        false,
        "FailedGetScale",
        format!("the HPA controller was unable to get the target's current scale: {error}"),
        now,
    );
    vec![warning("FailedGetScale", error.to_owned())]
}

/// §3.2 steps 1 (success) to 4, and the normalization of §3.6/§3.7.
pub fn decide(
    history: &mut History,
    conditions: &mut Conditions,
    cycle: Cycle<'_>,
    metrics: MetricsPhase,
) -> Decision {
    let Cycle {
        now, spec, current, ..
    } = cycle;
    conditions.set_reason(
        ConditionType::AbleToScale,
        true,
        Reason::SucceededGetScale,
        now,
    );
    if history.recommendations.is_empty() {
        history.recommendations.push(Recommendation {
            replicas: current,
            at: now,
        });
    }
    match plan(spec, current) {
        Plan::Disabled => {
            conditions.set_reason(
                ConditionType::ScalingActive,
                false,
                Reason::ScalingDisabled,
                now,
            );
            return Decision::keep(current, Vec::new());
        }
        Plan::Clamp { desired, reason } => {
            return Decision {
                desired: Some(desired),
                rescale: desired != current,
                reason: reason.to_owned(),
                ..Decision::keep(current, Vec::new())
            };
        }
        Plan::Metrics => {}
    }
    match metrics {
        MetricsPhase::Evaluated(outcomes) => {
            decide_from_metrics(history, conditions, cycle, outcomes)
        }
        MetricsPhase::NotComputed => Decision::keep(current, Vec::new()),
        MetricsPhase::MissingSelector => selector_failure(conditions, None, now),
        MetricsPhase::BadSelector(e) => selector_failure(conditions, Some(e), now),
    }
}

/// `InvalidSelector`: no metrics can be read without the pods' selector, so no scaling
/// (upstream then proceeds with a proposal of 0 on some releases; we keep the size, §3.8).
fn selector_failure(
    conditions: &mut Conditions,
    parse_error: Option<String>,
    now: Timestamp,
) -> Decision {
    let (message, event) = match parse_error {
        None => (
            "the HPA target's scale is missing a selector".to_owned(),
            warning("SelectorRequired", "selector is required".to_owned()),
        ),
        Some(e) => {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            (msg.clone(), warning("InvalidSelector", msg))
        }
    };
    conditions.set(
        ConditionType::ScalingActive,
        false,
        "InvalidSelector",
        message,
        now,
    );
    Decision {
        desired: None,
        ..Decision::keep(0, vec![event])
    }
}

fn decide_from_metrics(
    history: &mut History,
    conditions: &mut Conditions,
    cycle: Cycle<'_>,
    outcomes: Vec<MetricOutcome>,
) -> Decision {
    let Cycle { now, current, .. } = cycle;
    let mut events = failure_events(&outcomes);
    let statuses: Vec<Value> = outcomes.iter().map(|o| o.status.clone()).collect();
    let proposal = match combine(&outcomes, current) {
        Combined::Invalid { first, error } => {
            let message = format!(
                "the HPA was unable to compute the replica count: {}",
                first.detail
            );
            conditions.set(
                ConditionType::ScalingActive,
                false,
                first.reason,
                message,
                now,
            );
            events.push(warning("FailedComputeMetricsReplicas", error));
            return Decision {
                desired: None,
                current_metrics: Some(statuses),
                ..Decision::keep(current, events)
            };
        }
        Combined::Proposal(p) => p,
    };
    let message = format!(
        "the HPA was able to successfully calculate a replica count from {}",
        proposal.description
    );
    conditions.set(
        ConditionType::ScalingActive,
        true,
        "ValidMetricFound",
        message,
        now,
    );
    let reason = rescale_reason(&proposal.description, proposal.replicas, current);
    let n = normalize_proposal(history, cycle, proposal.replicas);
    conditions.set_reason(ConditionType::AbleToScale, true, n.stabilization, now);
    conditions.set_reason(ConditionType::ScalingLimited, n.limited, n.limit, now);
    Decision {
        desired: Some(n.desired),
        rescale: n.desired != current,
        reason,
        current_metrics: Some(statuses),
        events,
    }
}

/// Every failed metric records its own Warning, as `getUnableComputeReplicaCountCondition`
/// does upstream.
fn failure_events(outcomes: &[MetricOutcome]) -> Vec<EventRecord> {
    outcomes
        .iter()
        .filter_map(|o| o.result.as_ref().err())
        .map(|f| warning(f.reason, f.detail.clone()))
        .collect()
}

/// The rescale reason of §3.2 step 4d, from the proposal before normalization.
fn rescale_reason(description: &str, proposal: i32, current: i32) -> String {
    match proposal.cmp(&current) {
        std::cmp::Ordering::Greater => format!("{description} above target"),
        std::cmp::Ordering::Less => "All metrics below target".to_owned(),
        std::cmp::Ordering::Equal => String::new(),
    }
}

/// §3.6 without `spec.behavior`, §3.7 with it.
fn normalize_proposal(
    history: &mut History,
    cycle: Cycle<'_>,
    prenormalized: i32,
) -> normalize::Normalized {
    let Cycle {
        now,
        spec,
        settings,
        current,
    } = cycle;
    let (min, max) = (spec.min(), spec.max_replicas);
    match settings.rules_for(spec) {
        None => {
            let window = signed(settings.downscale_stabilization);
            normalize::legacy(history, now, current, prenormalized, min, max, window)
        }
        Some(rules) => {
            normalize::with_behavior(history, &rules, now, current, prenormalized, min, max)
        }
    }
}

/// §3.2 step 5 after the `/scale` write: conditions, events and the scale-event history.
/// Returns whether `lastScaleTime` must be set to `now`.
pub fn finish_rescale(
    history: &mut History,
    conditions: &mut Conditions,
    cycle: Cycle<'_>,
    decision: &mut Decision,
    result: Result<(), String>,
) -> bool {
    let Cycle {
        now,
        spec,
        settings,
        current,
    } = cycle;
    let Some(desired) = decision.desired else {
        return false;
    };
    match result {
        Ok(()) => {
            conditions.set(
                ConditionType::AbleToScale,
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
                now,
            );
            decision.events.push(EventRecord {
                warning: false,
                reason: "SuccessfulRescale".to_owned(),
                message: format!("New size: {desired}; reason: {}", decision.reason),
            });
            if let Some(rules) = settings.rules_for(spec) {
                normalize::record_scale_event(history, &rules, now, current, desired);
            }
            true
        }
        Err(e) => {
            conditions.set(
                ConditionType::AbleToScale,
                false,
                "FailedUpdateScale",
                format!("the HPA controller was unable to update the target scale: {e}"),
                now,
            );
            decision.events.push(warning(
                "FailedRescale",
                format!(
                    "New size: {desired}; reason: {}; error: {e}",
                    decision.reason
                ),
            ));
            // A failed write leaves desiredReplicas as it was (setCurrentReplicasAndMetricsInStatus).
            decision.desired = None;
            false
        }
    }
}

/// The new `status` (§3.8): `currentReplicas` omitted at 0, `desiredReplicas` always present,
/// `currentMetrics` null when not computed.
pub fn status_json(
    previous: &Value,
    current: Option<i32>,
    decision: Option<&Decision>,
    conditions: &Conditions,
    scaled_at: Option<Timestamp>,
) -> Value {
    let mut status = json!({});
    if let Some(t) = scaled_at.map(format_time).or_else(|| {
        previous
            .get("lastScaleTime")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) {
        status["lastScaleTime"] = json!(t);
    }
    let current = current.or_else(|| {
        previous
            .get("currentReplicas")
            .and_then(Value::as_i64)
            .and_then(|v| i32::try_from(v).ok())
    });
    if let Some(c) = current.filter(|c| *c != 0) {
        status["currentReplicas"] = json!(c);
    }
    let previous_desired = previous
        .get("desiredReplicas")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let desired = decision
        .and_then(|d| d.desired)
        .map_or(previous_desired, i64::from);
    status["desiredReplicas"] = json!(desired);
    status["currentMetrics"] = match decision {
        Some(d) => d.current_metrics.clone().map_or(Value::Null, Value::Array),
        None => previous
            .get("currentMetrics")
            .cloned()
            .unwrap_or(Value::Null),
    };
    if !conditions.0.is_empty() {
        status["conditions"] = conditions.to_json();
    }
    status
}
