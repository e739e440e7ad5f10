//! Table tests of the HPA algorithm: every worked example of `spec/kubernetes.md` §3.10 and
//! behavior scenarios replayed cycle by cycle in virtual time (15 s apart, as the controller's
//! sync period would run them). This file holds the harness and the §3.10 examples;
//! [`behavior`] covers §3.4/§3.7 scenarios and [`failures`] the shortcuts, failures and status.

mod behavior;
mod failures;

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
