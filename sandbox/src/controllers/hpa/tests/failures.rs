//! Shortcut branches (§3.2 4a–c), metric and selector failures (§3.5, §3.8), failed writes,
//! the status shape, and a bounds property over random inputs.

use rstest::rstest;
use serde_json::{Value, json};

use super::*;
use crate::controllers::hpa::replicas::Tolerance;

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
