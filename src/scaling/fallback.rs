//! Fallback (`reference/keda.md` §2.6): after `failureThreshold` consecutive failures of a
//! metric, the value served to the HPA is synthesised so the HPA settles on the fallback
//! replica count, and at zero replicas the loop scales out to it.

use std::collections::BTreeMap;

use crate::crd::{Fallback, FallbackBehavior, HealthStatus};

/// `status.health[..].status` of a metric read successfully last time.
pub const HAPPY: &str = "Happy";
/// `status.health[..].status` of a metric whose last read failed.
pub const FAILING: &str = "Failing";

/// Record one read of a metric in its health entry: success resets, failure counts up.
pub fn record(health: &mut HealthStatus, success: bool) {
    if success {
        health.number_of_failures = Some(0);
        health.status = Some(HAPPY.to_owned());
    } else {
        let failures = health.number_of_failures.unwrap_or(0).saturating_add(1);
        health.number_of_failures = Some(failures);
        health.status = Some(FAILING.to_owned());
    }
}

/// Whether a metric is past its failure threshold (strictly more failures than allowed).
pub fn is_failing_over_threshold(health: &HealthStatus, fallback: &Fallback) -> bool {
    health.number_of_failures.unwrap_or(0) > fallback.failure_threshold
}

/// The replica count fallback asks for, given the target's current replicas.
///
/// `ScalingModifiers` defers to the formula; when the formula yields nothing it behaves as
/// `Static`, which is what this returns for it.
pub fn replicas(fallback: &Fallback, current_replicas: i32) -> i32 {
    match fallback.behavior {
        FallbackBehavior::Static | FallbackBehavior::ScalingModifiers => fallback.replicas,
        FallbackBehavior::CurrentReplicas => current_replicas,
        FallbackBehavior::CurrentReplicasIfHigher => current_replicas.max(fallback.replicas),
        FallbackBehavior::CurrentReplicasIfLower => current_replicas.min(fallback.replicas),
    }
}

/// The metric value that makes the HPA settle on `replicas`.
///
/// AverageValue: the HPA divides by the replica count, so `replicas × target`. Value: the HPA
/// multiplies the ratio by the ready pods, so `replicas × target / ready` (one ready pod is
/// assumed when none is, so the value stays finite).
pub fn synthesized_value(
    average_value: bool,
    target: f64,
    replicas: i32,
    ready_replicas: i32,
) -> f64 {
    let total = f64::from(replicas) * target;
    if average_value {
        total
    } else {
        total / f64::from(ready_replicas.max(1))
    }
}

/// Every metric's health after a poll, and what fallback asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct AfterPoll {
    /// `status.health`, by metric name.
    pub health: BTreeMap<String, HealthStatus>,
    /// Some metric is past its failure threshold.
    pub active: bool,
    /// The replicas fallback wants while active.
    pub replicas: Option<i32>,
}

/// Update health with one poll's outcomes (metric name → read successfully) and decide whether
/// fallback applies. `None` without `spec.fallback`: KEDA tracks health only when it is set.
pub fn after_poll(
    fallback: Option<&Fallback>,
    previous: &BTreeMap<String, HealthStatus>,
    outcomes: &BTreeMap<String, bool>,
    current_replicas: i32,
) -> Option<AfterPoll> {
    let fallback = fallback?;
    let mut health = previous.clone();
    for (metric, success) in outcomes {
        record(health.entry(metric.clone()).or_default(), *success);
    }
    health.retain(|metric, _| outcomes.contains_key(metric));
    let active = health
        .values()
        .any(|h| is_failing_over_threshold(h, fallback));
    let replicas = active.then(|| replicas(fallback, current_replicas));
    Some(AfterPoll {
        health,
        active,
        replicas,
    })
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn fallback(behavior: FallbackBehavior) -> Fallback {
        Fallback {
            failure_threshold: 3,
            replicas: 6,
            behavior,
        }
    }

    #[rstest]
    #[case::static_ignores_current(FallbackBehavior::Static, 2, 6)]
    #[case::current_keeps_current(FallbackBehavior::CurrentReplicas, 2, 2)]
    #[case::if_higher_takes_fallback(FallbackBehavior::CurrentReplicasIfHigher, 2, 6)]
    #[case::if_higher_keeps_current(FallbackBehavior::CurrentReplicasIfHigher, 9, 9)]
    #[case::if_lower_keeps_current(FallbackBehavior::CurrentReplicasIfLower, 2, 2)]
    #[case::if_lower_takes_fallback(FallbackBehavior::CurrentReplicasIfLower, 9, 6)]
    #[case::modifiers_without_formula_value(FallbackBehavior::ScalingModifiers, 2, 6)]
    #[case::static_at_zero(FallbackBehavior::Static, 0, 6)]
    #[case::if_lower_at_zero(FallbackBehavior::CurrentReplicasIfLower, 0, 0)]
    fn fallback_replicas_follow_behavior(
        #[case] behavior: FallbackBehavior,
        #[case] current: i32,
        #[case] expected: i32,
    ) {
        assert_eq!(replicas(&fallback(behavior), current), expected);
    }

    #[test]
    fn health_counts_consecutive_failures_and_resets_on_success() {
        let fb = fallback(FallbackBehavior::Static);
        let mut health = HealthStatus::default();
        for expected in 1..=4 {
            record(&mut health, false);
            assert_eq!(health.number_of_failures, Some(expected));
            assert_eq!(health.status.as_deref(), Some(FAILING));
        }
        assert!(
            is_failing_over_threshold(&health, &fb),
            "4 failures > threshold 3"
        );
        record(&mut health, true);
        assert_eq!(
            (health.number_of_failures, health.status.as_deref()),
            (Some(0), Some(HAPPY))
        );
        assert!(!is_failing_over_threshold(&health, &fb));
    }

    #[test]
    fn fallback_activates_past_the_threshold_and_clears_on_success() {
        let fb = Fallback {
            failure_threshold: 1,
            replicas: 4,
            behavior: FallbackBehavior::Static,
        };
        let failed = BTreeMap::from([("s0-a".to_owned(), false), ("s1-b".to_owned(), true)]);
        let first = after_poll(Some(&fb), &BTreeMap::new(), &failed, 0).unwrap();
        assert_eq!(
            (first.active, first.replicas),
            (false, None),
            "1 failure is not > 1"
        );
        let second = after_poll(Some(&fb), &first.health, &failed, 0).unwrap();
        assert_eq!((second.active, second.replicas), (true, Some(4)));
        assert_eq!(second.health["s1-b"].status.as_deref(), Some(HAPPY));
        let ok = BTreeMap::from([("s0-a".to_owned(), true), ("s1-b".to_owned(), true)]);
        let third = after_poll(Some(&fb), &second.health, &ok, 4).unwrap();
        assert_eq!((third.active, third.replicas), (false, None));
        assert!(
            after_poll(None, &BTreeMap::new(), &failed, 0).is_none(),
            "no fallback, no tracking"
        );
    }

    #[test]
    fn threshold_is_strict() {
        let health = HealthStatus {
            number_of_failures: Some(3),
            status: Some(FAILING.into()),
        };
        assert!(!is_failing_over_threshold(
            &health,
            &fallback(FallbackBehavior::Static)
        ));
    }

    #[rstest]
    #[case::average_value(true, 10.0, 6, 3, 60.0)]
    #[case::value_divides_by_ready(false, 10.0, 6, 3, 20.0)]
    #[case::value_with_no_ready_pods(false, 10.0, 6, 0, 60.0)]
    fn synthesized_values_make_the_hpa_land_on_fallback(
        #[case] average: bool,
        #[case] target: f64,
        #[case] replicas: i32,
        #[case] ready: i32,
        #[case] expected: f64,
    ) {
        assert_eq!(
            synthesized_value(average, target, replicas, ready),
            expected
        );
    }
}
