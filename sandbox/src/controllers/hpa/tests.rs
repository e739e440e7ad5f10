//! Table tests of the HPA algorithm: every worked example of `spec/kubernetes.md` §3.10 and
//! behavior scenarios replayed cycle by cycle in virtual time (15 s apart, as the controller's
//! sync period would run them).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use rstest::rstest;
use serde_json::{Value, json};

use super::replicas::{PodView, Tolerance};
use super::*;

fn t0() -> Timestamp {
    "2024-05-01T12:00:00Z".parse().unwrap()
}

fn at(seconds: i64) -> Timestamp {
    crate::clock::offset(t0(), SignedDuration::from_secs(seconds))
}

fn pod(name: &str, phase: &str, ready: bool) -> PodView {
    PodView {
        name: name.to_owned(),
        phase: phase.to_owned(),
        deleting: false,
        ready: Some((ready, Some(t0()))),
        start_time: Some(t0()),
        containers: vec![("app".to_owned(), BTreeMap::from([("cpu".to_owned(), 500)]))],
    }
}

/// `ready` Running+Ready pods and `unready` Pending ones.
fn pods(ready: usize, unready: usize) -> Vec<PodView> {
    let mut v: Vec<_> = (0..ready)
        .map(|i| pod(&format!("r{i}"), "Running", true))
        .collect();
    v.extend((0..unready).map(|i| pod(&format!("u{i}"), "Pending", false)));
    v
}

fn external_hpa(target: Value, behavior: Option<Value>, min: i32) -> HpaSpec {
    let mut spec = json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
        "minReplicas": min, "maxReplicas": 20,
        "metrics": [{"type": "External", "external": {
            "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "orders"}}},
            "target": target}}]
    });
    if let Some(b) = behavior {
        spec["behavior"] = b;
    }
    serde_json::from_value(spec).unwrap()
}

/// One HPA's in-memory state across cycles, like the controller keeps it.
struct Sim {
    spec: HpaSpec,
    settings: Settings,
    history: History,
    conditions: Conditions,
}

/// What one cycle produced.
#[derive(Debug)]
struct Step {
    desired: Option<i32>,
    decision: Decision,
    conditions: Conditions,
}

impl Step {
    fn reason(&self, kind: ConditionType) -> (bool, String) {
        let c = self.conditions.get(kind).expect("condition set");
        (c.status, c.reason.clone())
    }
}

impl Sim {
    fn new(spec: HpaSpec) -> Self {
        Self {
            spec,
            settings: Settings::default(),
            history: History::default(),
            conditions: Conditions::default(),
        }
    }

    /// Runs one cycle with one External metric reading `usage` milli, applying the rescale.
    fn cycle(
        &mut self,
        now: Timestamp,
        current: i32,
        status: i32,
        pods: &[PodView],
        usage: Result<i64, String>,
    ) -> Step {
        let ctx = MetricContext {
            namespace: "shop",
            current_replicas: current,
            status_replicas: status,
            pods,
            tolerance: self.settings.tolerance_for(&self.spec),
            cpu: self.settings.cpu(now),
        };
        let metrics = self.spec.effective_metrics();
        let outcomes = metrics
            .iter()
            .map(|m| {
                evaluate(
                    m,
                    MetricInput::External(usage.clone().map(|u| vec![u])),
                    &ctx,
                )
            })
            .collect();
        self.run(now, current, MetricsPhase::Evaluated(outcomes))
    }

    fn run(&mut self, now: Timestamp, current: i32, phase: MetricsPhase) -> Step {
        let cycle = Cycle {
            now,
            spec: &self.spec,
            settings: &self.settings,
            current,
        };
        let mut decision = decide(&mut self.history, &mut self.conditions, cycle, phase);
        if decision.rescale {
            finish_rescale(
                &mut self.history,
                &mut self.conditions,
                cycle,
                &mut decision,
                Ok(()),
            );
        }
        Step {
            desired: decision.desired,
            decision,
            conditions: self.conditions.clone(),
        }
    }
}

const SCALE_UP_LIMIT: (bool, &str) = (true, "ScaleUpLimit");

#[rstest]
#[case::value_target_legacy_limit_first_cycle(json!({"type": "Value", "value": "10"}), 35_000, 2, 2, pods(2, 0), 4, Some(SCALE_UP_LIMIT))]
#[case::value_target_second_cycle_counts_only_ready(json!({"type": "Value", "value": "10"}), 35_000, 4, 4, pods(2, 2), 7, Some((false, "DesiredWithinRange")))]
#[case::average_value_uses_status_replicas(json!({"type": "AverageValue", "averageValue": "10"}), 35_000, 2, 2, pods(2, 0), 4, Some((false, "DesiredWithinRange")))]
#[case::within_tolerance_keeps_size(json!({"type": "Value", "value": "10"}), 10_500, 3, 3, pods(3, 0), 3, Some((false, "DesiredWithinRange")))]
#[case::interval_rule_at_exact_tolerance(json!({"type": "Value", "value": "10"}), 11_000, 3, 3, pods(3, 0), 3, Some((false, "DesiredWithinRange")))]
#[case::value_target_at_zero_ignores_tolerance(json!({"type": "Value", "value": "10"}), 10_500, 0, 0, pods(0, 0), 0, None)]
fn hpa_worked_examples_single_cycle(
    #[case] target: Value,
    #[case] usage: i64,
    #[case] current: i32,
    #[case] status: i32,
    #[case] pods: Vec<PodView>,
    #[case] desired: i32,
    #[case] limited: Option<(bool, &str)>,
) {
    let mut sim = Sim::new(external_hpa(target, None, 1));
    let step = sim.cycle(t0(), current, status, &pods, Ok(usage));
    assert_eq!(step.desired, Some(desired));
    if let Some((status, reason)) = limited {
        assert_eq!(
            step.reason(ConditionType::ScalingLimited),
            (status, reason.to_owned())
        );
    }
}

#[test]
fn hpa_value_target_scale_up_then_continue_with_unready_pods() {
    // §3.10 first example across two cycles: 2 → 4 (ScaleUpLimit) → 7.
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        1,
    ));
    let first = sim.cycle(t0(), 2, 2, &pods(2, 0), Ok(35_000));
    assert_eq!(first.desired, Some(4));
    assert_eq!(
        first.reason(ConditionType::ScalingLimited),
        (true, "ScaleUpLimit".to_owned())
    );
    assert_eq!(
        first.reason(ConditionType::AbleToScale),
        (true, "SucceededRescale".to_owned())
    );
    let events: Vec<_> = first
        .decision
        .events
        .iter()
        .map(|e| e.message.as_str())
        .collect();
    assert_eq!(
        events,
        vec![
            "New size: 4; reason: external metric queue_depth(&LabelSelector{MatchLabels:map[string]string{queue: orders,},MatchExpressions:[]LabelSelectorRequirement{},}) above target"
        ]
    );
    let second = sim.cycle(at(15), 4, 4, &pods(2, 2), Ok(35_000));
    assert_eq!(second.desired, Some(7));
}

#[test]
fn hpa_legacy_scale_down_waits_for_the_five_minute_window() {
    // §3.10: Value 10, sum 5, spec 4, ready 4 → proposal 2, held at 4 for 300 s.
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        1,
    ));
    let mut timeline = Vec::new();
    for cycle in 0..=21 {
        let step = sim.cycle(at(cycle * 15), 4, 4, &pods(4, 0), Ok(5_000));
        timeline.push((
            cycle * 15,
            step.desired,
            step.reason(ConditionType::AbleToScale).1,
        ));
        if step.decision.rescale {
            break;
        }
    }
    let (last_t, last_desired, _) = timeline.last().cloned().unwrap();
    assert_eq!((last_t, last_desired), (315, Some(2)));
    assert!(
        timeline[..timeline.len() - 1]
            .iter()
            .all(|(_, d, r)| *d == Some(4) && r == "ScaleDownStabilized"),
        "{timeline:?}"
    );
}

#[test]
fn hpa_legacy_doubles_without_period_memory() {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        None,
        1,
    ));
    let mut current = 2;
    let mut seen = Vec::new();
    for cycle in 0..3 {
        let step = sim.cycle(
            at(cycle * 15),
            current,
            current,
            &pods(current as usize, 0),
            Ok(100_000),
        );
        current = step.desired.unwrap();
        seen.push(current);
    }
    assert_eq!(seen, vec![4, 8, 16]);
}

fn default_behavior() -> Option<Value> {
    Some(json!({}))
}

fn spec_3_11_behavior() -> Option<Value> {
    Some(json!({"scaleDown": {"stabilizationWindowSeconds": 120,
        "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}]}}))
}

#[test]
fn hpa_behavior_defaults_scale_up_six_then_ten() {
    // §3.10: C=2, P=10 → 6 (ScaleUpLimit); at T+15 the T event is outside → 10.
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        default_behavior(),
        1,
    ));
    let first = sim.cycle(t0(), 2, 2, &pods(2, 0), Ok(10_000));
    assert_eq!(first.desired, Some(6));
    assert_eq!(
        first.reason(ConditionType::ScalingLimited),
        (true, "ScaleUpLimit".to_owned())
    );
    let second = sim.cycle(at(15), 6, 6, &pods(6, 0), Ok(10_000));
    assert_eq!(second.desired, Some(10));
    assert_eq!(
        second.reason(ConditionType::ScalingLimited),
        (false, "DesiredWithinRange".to_owned())
    );
}

#[test]
fn hpa_behavior_scale_down_stabilises_then_halves_per_minute() {
    // §3.10 last example with the §3.11 behavior: C=10, P=3 from T0.
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        spec_3_11_behavior(),
        1,
    ));
    let mut current = 10;
    let mut timeline = Vec::new();
    for cycle in 0..=13 {
        let step = sim.cycle(
            at(cycle * 15),
            current,
            current,
            &pods(current as usize, 0),
            Ok(3_000),
        );
        current = step.desired.unwrap();
        let (_, limit) = step.reason(ConditionType::ScalingLimited);
        timeline.push((cycle * 15, current, limit));
    }
    let expect = |t: i64, replicas: i32, reason: &str| (t, replicas, reason.to_owned());
    assert_eq!(timeline[7], expect(105, 10, "DesiredWithinRange"));
    assert_eq!(timeline[8], expect(120, 5, "ScaleDownLimit"));
    assert_eq!(timeline[9], expect(135, 5, "ScaleDownLimit"));
    assert_eq!(timeline[11], expect(165, 5, "ScaleDownLimit"));
    assert_eq!(timeline[12], expect(180, 3, "DesiredWithinRange"));
    assert_eq!(timeline[13], expect(195, 3, "DesiredWithinRange"));
}

#[rstest]
#[case::disabled_scale_down(json!({"scaleDown": {"selectPolicy": "Disabled", "stabilizationWindowSeconds": 0}}), 5, 1_000, 5, (true, "ScaleDownLimit"))]
#[case::disabled_scale_up(json!({"scaleUp": {"selectPolicy": "Disabled"}}), 2, 50_000, 2, (true, "ScaleUpLimit"))]
#[case::min_policy_scale_up(json!({"scaleUp": {"selectPolicy": "Min"}}), 2, 50_000, 4, (true, "ScaleUpLimit"))]
#[case::max_replicas_is_tighter(json!({}), 18, 50_000, 20, (true, "TooManyReplicas"))]
#[case::min_replicas_is_tighter(json!({"scaleDown": {"stabilizationWindowSeconds": 0}}), 3, 100, 2, (true, "TooFewReplicas"))]
#[case::pods_policy_scale_down(json!({"scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}]}}), 10, 1_000, 8, (true, "ScaleDownLimit"))]
fn hpa_behavior_policies(
    #[case] behavior: Value,
    #[case] current: i32,
    #[case] usage: i64,
    #[case] desired: i32,
    #[case] limited: (bool, &str),
) {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        Some(behavior),
        2,
    ));
    let step = sim.cycle(
        t0(),
        current,
        current,
        &pods(current as usize, 0),
        Ok(usage),
    );
    assert_eq!(step.desired, Some(desired));
    assert_eq!(
        step.reason(ConditionType::ScalingLimited),
        (limited.0, limited.1.to_owned())
    );
}

#[test]
fn hpa_behavior_pods_policy_limits_scale_up_per_period() {
    let behavior =
        json!({"scaleUp": {"policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}});
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        Some(behavior),
        1,
    ));
    let mut current = 1;
    let mut seen = Vec::new();
    for cycle in 0..=4 {
        let step = sim.cycle(
            at(cycle * 15),
            current,
            current,
            &pods(current as usize, 0),
            Ok(10_000),
        );
        current = step.desired.unwrap();
        seen.push(current);
    }
    // One pod per 60 s; the event at T leaves the period at T+60 (exclusive cutoff).
    assert_eq!(seen, vec![2, 2, 2, 2, 3]);
}

#[test]
fn hpa_behavior_scale_up_stabilization_takes_the_lowest_recent() {
    let behavior = json!({"scaleUp": {"stabilizationWindowSeconds": 60}});
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        Some(behavior),
        1,
    ));
    let step = sim.cycle(t0(), 2, 2, &pods(2, 0), Ok(10_000));
    assert_eq!(step.desired, Some(2));
    assert_eq!(
        step.reason(ConditionType::AbleToScale),
        (true, "ScaleUpStabilized".to_owned())
    );
    let later = sim.cycle(at(75), 2, 2, &pods(2, 0), Ok(10_000));
    assert_eq!(later.desired, Some(6));
}

#[rstest]
#[case::up_tolerance_override_blocks_rise(json!({"scaleUp": {"tolerance": "0.5"}}), 14_000, 10)]
#[case::global_tolerance_allows_rise(json!({}), 14_000, 14)]
#[case::global_tolerance_blocks_small_drop(json!({"scaleDown": {"stabilizationWindowSeconds": 0}}), 9_500, 10)]
#[case::garbage_tolerance_falls_back_to_global(json!({"scaleUp": {"tolerance": "lots"}}), 14_000, 14)]
fn hpa_tolerance_per_direction(#[case] behavior: Value, #[case] usage: i64, #[case] desired: i32) {
    let target = json!({"type": "AverageValue", "averageValue": "1"});
    let mut sim = Sim::new(external_hpa(target, Some(behavior), 1));
    let step = sim.cycle(t0(), 10, 10, &pods(10, 0), Ok(usage));
    assert_eq!(step.desired, Some(desired));
}

#[test]
fn hpa_down_tolerance_override_lets_a_five_percent_drop_scale() {
    let behavior = json!({"scaleDown": {"tolerance": "0.01", "stabilizationWindowSeconds": 0}});
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "1"}),
        Some(behavior),
        1,
    ));
    let step = sim.cycle(t0(), 20, 20, &pods(20, 0), Ok(18_500));
    assert_eq!(step.desired, Some(19));
    assert_eq!(
        sim.settings.tolerance_for(&sim.spec),
        Tolerance {
            up: 0.1,
            down: 0.01
        }
    );
}

#[rstest]
#[case::zero_replicas_disables(0, None, (false, "ScalingDisabled"), false)]
#[case::above_max_clamps(25, Some(20), (true, "SucceededRescale"), true)]
#[case::below_min_clamps(1, Some(3), (true, "SucceededRescale"), true)]
fn hpa_shortcuts_skip_metrics(
    #[case] current: i32,
    #[case] desired: Option<i32>,
    #[case] condition: (bool, &str),
    #[case] rescale: bool,
) {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        3,
    ));
    let step = sim.run(t0(), current, MetricsPhase::NotComputed);
    assert_eq!(step.decision.rescale, rescale);
    assert_eq!(step.decision.current_metrics, None);
    assert_eq!(step.desired, desired.or(Some(current)));
    let kind = if rescale {
        ConditionType::AbleToScale
    } else {
        ConditionType::ScalingActive
    };
    assert_eq!(step.reason(kind), (condition.0, condition.1.to_owned()));
    if current == 0 {
        let c = step.conditions.get(ConditionType::ScalingActive).unwrap();
        assert_eq!(
            c.message,
            "scaling is disabled since the replica count of the target is zero"
        );
    }
}

#[test]
fn hpa_failed_external_metric_blocks_scaling_with_upstream_messages() {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "AverageValue", "averageValue": "10"}),
        None,
        1,
    ));
    let err =
        "unable to fetch metrics from external metrics API: the server could not find the metric"
            .to_owned();
    let step = sim.cycle(t0(), 3, 3, &pods(3, 0), Err(err));
    assert_eq!(step.desired, None);
    assert!(!step.decision.rescale);
    let active = step.conditions.get(ConditionType::ScalingActive).unwrap();
    assert_eq!(active.reason, "FailedGetExternalMetric");
    assert_eq!(
        active.message,
        "the HPA was unable to compute the replica count: unable to get external metric shop/queue_depth/&LabelSelector{MatchLabels:map[string]string{queue: orders,},MatchExpressions:[]LabelSelectorRequirement{},}: unable to fetch metrics from external metrics API: the server could not find the metric"
    );
    let reasons: Vec<_> = step
        .decision
        .events
        .iter()
        .map(|e| e.reason.as_str())
        .collect();
    assert_eq!(
        reasons,
        vec!["FailedGetExternalMetric", "FailedComputeMetricsReplicas"]
    );
    assert!(step.decision.events[1].message.starts_with(
        "invalid metrics (1 invalid out of 1), first error is: failed to get queue_depth external metric: unable to get external metric shop/queue_depth/"
    ));
    assert_eq!(
        step.decision.current_metrics,
        Some(vec![json!({"type": ""})])
    );
}

fn two_metric_hpa() -> HpaSpec {
    serde_json::from_value(json!({
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "worker"},
        "maxReplicas": 20,
        "metrics": [
            {"type": "External", "external": {"metric": {"name": "a"}, "target": {"type": "AverageValue", "averageValue": "1"}}},
            {"type": "External", "external": {"metric": {"name": "b"}, "target": {"type": "AverageValue", "averageValue": "1"}}}
        ]
    }))
    .unwrap()
}

#[rstest]
#[case::scale_up_allowed_despite_failure(6_000, Some(4), true)]
#[case::scale_down_blocked_by_failure(1_000, None, false)]
fn hpa_partial_metric_failure(
    #[case] usage_a: i64,
    #[case] desired: Option<i32>,
    #[case] active: bool,
) {
    let mut sim = Sim::new(two_metric_hpa());
    let p = pods(2, 0);
    let ctx = MetricContext {
        namespace: "shop",
        current_replicas: 2,
        status_replicas: 2,
        pods: &p,
        tolerance: Tolerance::symmetric(0.1),
        cpu: sim.settings.cpu(t0()),
    };
    let metrics = sim.spec.effective_metrics();
    let outcomes = vec![
        evaluate(&metrics[0], MetricInput::External(Ok(vec![usage_a])), &ctx),
        evaluate(
            &metrics[1],
            MetricInput::External(Err("boom".to_owned())),
            &ctx,
        ),
    ];
    let step = sim.run(t0(), 2, MetricsPhase::Evaluated(outcomes));
    assert_eq!(step.desired, desired);
    assert_eq!(
        step.conditions
            .get(ConditionType::ScalingActive)
            .unwrap()
            .status,
        active
    );
}

#[rstest]
#[case::missing(
    MetricsPhase::MissingSelector,
    "the HPA target's scale is missing a selector",
    "SelectorRequired"
)]
#[case::bad(MetricsPhase::BadSelector("x".to_owned()), "couldn't convert selector into a corresponding internal selector object: x", "InvalidSelector")]
fn hpa_invalid_selector(#[case] phase: MetricsPhase, #[case] message: &str, #[case] event: &str) {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        1,
    ));
    let step = sim.run(t0(), 2, phase);
    let c = step.conditions.get(ConditionType::ScalingActive).unwrap();
    assert_eq!(
        (c.status, c.reason.as_str(), c.message.as_str()),
        (false, "InvalidSelector", message)
    );
    assert_eq!(step.decision.events[0].reason, event);
    assert!(!step.decision.rescale);
}

#[test]
fn hpa_failed_scale_write_reports_and_keeps_desired() {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        1,
    ));
    let p = pods(2, 0);
    let ctx = MetricContext {
        namespace: "shop",
        current_replicas: 2,
        status_replicas: 2,
        pods: &p,
        tolerance: Tolerance::symmetric(0.1),
        cpu: sim.settings.cpu(t0()),
    };
    let outcome = evaluate(
        &sim.spec.effective_metrics()[0],
        MetricInput::External(Ok(vec![35_000])),
        &ctx,
    );
    let cycle = Cycle {
        now: t0(),
        spec: &sim.spec,
        settings: &sim.settings,
        current: 2,
    };
    let mut d = decide(
        &mut sim.history,
        &mut sim.conditions,
        cycle,
        MetricsPhase::Evaluated(vec![outcome]),
    );
    let scaled = finish_rescale(
        &mut sim.history,
        &mut sim.conditions,
        cycle,
        &mut d,
        Err("conflict".to_owned()),
    );
    assert!(!scaled);
    assert_eq!(d.desired, None);
    let able = sim.conditions.get(ConditionType::AbleToScale).unwrap();
    assert_eq!(
        (able.status, able.reason.as_str()),
        (false, "FailedUpdateScale")
    );
    assert!(
        d.events
            .last()
            .unwrap()
            .message
            .ends_with("; error: conflict")
    );
    let status = status_json(
        &json!({"desiredReplicas": 2}),
        Some(2),
        Some(&d),
        &sim.conditions,
        None,
    );
    assert_eq!(status["desiredReplicas"], 2);
}

#[test]
fn hpa_status_shape_matches_spec() {
    let mut sim = Sim::new(external_hpa(
        json!({"type": "Value", "value": "10"}),
        None,
        1,
    ));
    let step = sim.cycle(t0(), 2, 2, &pods(2, 0), Ok(35_000));
    let status = status_json(
        &Value::Null,
        Some(2),
        Some(&step.decision),
        &sim.conditions,
        Some(t0()),
    );
    assert_eq!(status["lastScaleTime"], "2024-05-01T12:00:00Z");
    assert_eq!(status["currentReplicas"], 2);
    assert_eq!(status["desiredReplicas"], 4);
    assert_eq!(
        status["currentMetrics"],
        json!([{"type": "External", "external": {
            "metric": {"name": "queue_depth", "selector": {"matchLabels": {"queue": "orders"}}},
            "current": {"value": "35"}}}])
    );
    let types: Vec<_> = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        vec!["AbleToScale", "ScalingActive", "ScalingLimited"]
    );
    let zero = status_json(&Value::Null, Some(0), None, &Conditions::default(), None);
    assert_eq!(zero, json!({"desiredReplicas": 0, "currentMetrics": null}));
}

proptest::proptest! {
    /// Whatever the metric says, a target inside its bounds stays inside them (§3.6, §3.7).
    #[test]
    fn hpa_desired_stays_within_bounds(
        min in 1i32..5, span in 0i32..30, offset in 0i32..30, usage in proptest::num::i64::ANY,
        behavior in proptest::bool::ANY, cycles in 1usize..6,
    ) {
        let max = min + span;
        let mut current = min + offset.min(span);
        let b = behavior.then(|| json!({"scaleDown": {"stabilizationWindowSeconds": 0}}));
        let mut sim = Sim::new(external_hpa(json!({"type": "AverageValue", "averageValue": "1"}), b, min));
        sim.spec.max_replicas = max;
        for cycle in 0..cycles {
            let step = sim.cycle(at(cycle as i64 * 15), current, current, &pods(current as usize, 0), Ok(usage));
            current = step.desired.unwrap_or(current);
            proptest::prop_assert!((min..=max).contains(&current), "{current} outside {min}..={max}");
        }
    }
}
