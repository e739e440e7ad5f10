//! Behavior-path (§3.7) and tolerance (§3.4) scenarios in virtual time.

use rstest::rstest;
use serde_json::{Value, json};

use super::*;

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

/// §3.7's closing note: the legacy path and the default behavior differ for the same input.
#[rstest]
#[case::legacy_path_allows_max_2c_or_4(None, 4)]
#[case::default_behavior_allows_c_plus_4(Some(json!({})), 6)]
#[case::behavior_without_policies_uses_defaults(Some(json!({"scaleUp": {"stabilizationWindowSeconds": 0}})), 6)]
fn hpa_legacy_and_default_behavior_differ(#[case] behavior: Option<Value>, #[case] desired: i32) {
    let target = json!({"type": "AverageValue", "averageValue": "1"});
    let mut sim = Sim::new(external_hpa(target, behavior, 1));
    let step = sim.cycle(t0(), 2, 2, &pods(2, 0), Ok(10_000));
    assert_eq!(step.desired, Some(desired));
    assert_eq!(
        step.reason(ConditionType::ScalingLimited),
        (true, "ScaleUpLimit".to_owned())
    );
}
