//! Per-metric replica proposals: the replica calculator of `spec/kubernetes.md` §3.3–§3.4.
//!
//! Everything is pure: the controller fetches metric values and pods, then calls these
//! functions. Usages and targets are int64 milli-units, ratios f64, exactly as upstream, so the
//! rounding (`ceil` of an f64 product, integer division for averages) matches a real cluster.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use thiserror::Error;

/// Why a proposal could not be computed from otherwise well-formed inputs (upstream wording).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalcError {
    /// External/Object Value target but the selector matched no pods.
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    /// Every pod was ignored, unready or missing.
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoUsableSamples,
    /// A pod lacks a request for the resource.
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        /// Resource name.
        resource: String,
        /// Container without request.
        container: String,
        /// Pod name.
        pod: String,
    },
    /// Requests of the counted pods sum to zero.
    #[error("no metrics returned matched known pods")]
    ZeroRequests,
}

/// Directional tolerance, using the interval rule of Kubernetes ≥ 1.33 (§3.4):
/// a ratio in `[1 − down, 1 + up]` blocks a change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Allowed relative excess before scaling up.
    pub up: f64,
    /// Allowed relative shortfall before scaling down.
    pub down: f64,
}

impl Tolerance {
    /// The same tolerance both ways.
    pub fn symmetric(t: f64) -> Self {
        Self { up: t, down: t }
    }

    /// Whether `ratio` is close enough to 1 to keep the current size. NaN and ±Inf never are.
    pub fn within(&self, ratio: f64) -> bool {
        ratio >= 1.0 - self.down && ratio <= 1.0 + self.up
    }
}

/// `int32(math.Ceil(x))`, saturating and mapping NaN to 0 like Rust's `as`, instead of Go's
/// undefined conversion (§3.3 "capped at i32::MAX").
pub fn ceil_i32(x: f64) -> i32 {
    x.ceil() as i32
}

/// A proposal and the value to report in `status.currentMetrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proposal {
    /// Proposed replica count.
    pub replicas: i32,
    /// Current value (milli) for the status, meaning depends on the target kind.
    pub current: i64,
}

/// Sum of metric item values, saturating (§1.4, §3.3).
pub fn sum_usage(values: &[i64]) -> i64 {
    values.iter().fold(0i64, |acc, v| acc.saturating_add(*v))
}

/// External / Object metric with an `averageValue` target (§3.3).
pub fn average_value(
    usage: i64,
    target_avg: i64,
    status_replicas: i32,
    tol: Tolerance,
) -> Proposal {
    let ratio = usage as f64 / (target_avg as f64 * f64::from(status_replicas));
    let replicas = if tol.within(ratio) {
        status_replicas
    } else {
        ceil_i32(usage as f64 / target_avg as f64)
    };
    let current = if status_replicas == 0 {
        0
    } else {
        (usage as f64 / f64::from(status_replicas)).ceil() as i64
    };
    Proposal { replicas, current }
}

/// Pods matching the target's selector, as counted for Value targets (§3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PodCount {
    /// All pods the selector matched (any phase).
    pub matched: usize,
    /// Running pods with `Ready=True`.
    pub ready: usize,
}

/// External / Object metric with a `value` target (§3.3).
pub fn value(
    usage: i64,
    target: i64,
    current_replicas: i32,
    pods: PodCount,
    tol: Tolerance,
) -> Result<Proposal, CalcError> {
    let ratio = usage as f64 / target as f64;
    let replicas = if current_replicas == 0 {
        ceil_i32(ratio)
    } else if tol.within(ratio) {
        current_replicas
    } else if pods.matched == 0 {
        return Err(CalcError::NoPods);
    } else {
        ceil_i32(ratio * pods.ready as f64)
    };
    Ok(Proposal {
        replicas,
        current: usage,
    })
}

/// A pod as the replica calculator sees it (§5.11).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    /// Pod name.
    pub name: String,
    /// `status.phase`.
    pub phase: String,
    /// `metadata.deletionTimestamp` is set.
    pub deleting: bool,
    /// `Ready` condition: status and `lastTransitionTime`.
    pub ready: Option<(bool, Option<Timestamp>)>,
    /// `status.startTime`.
    pub start_time: Option<Timestamp>,
    /// Containers with their requests (milli) by resource name.
    pub containers: Vec<(String, BTreeMap<String, i64>)>,
}

/// One per-pod metric sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Value in milli-units.
    pub value: i64,
    /// Sample time.
    pub timestamp: Option<Timestamp>,
    /// Sample window.
    pub window: SignedDuration,
}

/// How the plain/utilization algorithm compares samples to the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodTarget {
    /// Average raw value per pod (Pods metrics, Resource averageValue), milli.
    AverageValue(i64),
    /// Percent of the pods' requests (Resource averageUtilization).
    Utilization {
        /// Target percent.
        percent: i32,
        /// Resource name (`cpu`, `memory`).
        resource: String,
        /// Only this container's request counts (ContainerResource).
        container: Option<String>,
    },
}

/// Readiness timings of the CPU special case (§3.1 flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuReadiness {
    /// Evaluation time.
    pub now: Timestamp,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period`.
    pub initialization: SignedDuration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay`.
    pub initial_delay: SignedDuration,
}

/// Outcome of a Pods/Resource computation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodsProposal {
    /// Proposed replica count.
    pub replicas: i32,
    /// Utilization percent (utilization targets only).
    pub utilization: Option<i32>,
    /// Average raw value (milli).
    pub average: i64,
}

#[derive(Debug, Default)]
struct Classified {
    ready: BTreeMap<String, i64>,
    unready: Vec<String>,
    missing: Vec<String>,
}

/// Step 2 of the Resource/Pods algorithm: classify pods (§3.3).
fn classify(
    pods: &[PodView],
    samples: &BTreeMap<String, Sample>,
    cpu: Option<CpuReadiness>,
) -> Classified {
    let mut out = Classified::default();
    for pod in pods {
        if pod.deleting || pod.phase == "Failed" || pod.phase == "Succeeded" {
            continue;
        }
        if pod.phase == "Pending" {
            out.unready.push(pod.name.clone());
            continue;
        }
        let Some(sample) = samples.get(&pod.name) else {
            out.missing.push(pod.name.clone());
            continue;
        };
        if let Some(cpu) = cpu
            && cpu_unready(pod, sample, cpu)
        {
            out.unready.push(pod.name.clone());
            continue;
        }
        out.ready.insert(pod.name.clone(), sample.value);
    }
    out
}

/// The CPU-only readiness rules of §3.3 step 2.
fn cpu_unready(pod: &PodView, sample: &Sample, cpu: CpuReadiness) -> bool {
    let (Some((ready, transition)), Some(start)) = (pod.ready, pod.start_time) else {
        return true;
    };
    let transition = transition.unwrap_or(start);
    if cpu.now < crate::clock::offset(start, cpu.initialization) {
        let stale = sample
            .timestamp
            .is_none_or(|ts| ts < crate::clock::offset(transition, sample.window));
        !ready || stale
    } else {
        !ready && transition < crate::clock::offset(start, cpu.initial_delay)
    }
}

/// Ratio over `values`; utilization also yields the integer percent (§3.3 step 3).
fn ratio_of(
    values: &BTreeMap<String, i64>,
    target: &PodTarget,
    requests: &BTreeMap<String, i64>,
) -> Result<(f64, Option<i32>, i64), CalcError> {
    let total = values.values().fold(0i64, |a, v| a.saturating_add(*v));
    let average = total / (values.len().max(1) as i64);
    match target {
        PodTarget::AverageValue(t) => Ok((average as f64 / *t as f64, None, average)),
        PodTarget::Utilization { percent, .. } => {
            let req: i64 = values
                .keys()
                .filter_map(|k| requests.get(k))
                .fold(0i64, |a, r| a.saturating_add(*r));
            if req == 0 {
                return Err(CalcError::ZeroRequests);
            }
            let util = (i128::from(total) * 100 / i128::from(req)) as i64;
            let util = i32::try_from(util).unwrap_or(i32::MAX);
            Ok((f64::from(util) / f64::from(*percent), Some(util), average))
        }
    }
}

/// Resource and Pods metrics with missing/unready pod handling (§3.3 steps 1–5).
pub fn pods_metric(
    pods: &[PodView],
    samples: &BTreeMap<String, Sample>,
    target: &PodTarget,
    current_replicas: i32,
    tol: Tolerance,
    cpu: Option<CpuReadiness>,
) -> Result<PodsProposal, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let requests = pod_requests(pods, target)?;
    let c = classify(pods, samples, cpu);
    if c.ready.is_empty() {
        return Err(CalcError::NoUsableSamples);
    }
    let (ratio, utilization, average) = ratio_of(&c.ready, target, &requests)?;
    let up_with_unready = !c.unready.is_empty() && ratio > 1.0;
    let keep = |replicas| PodsProposal {
        replicas,
        utilization,
        average,
    };
    if !up_with_unready && c.missing.is_empty() {
        if tol.within(ratio) {
            return Ok(keep(current_replicas));
        }
        return Ok(keep(ceil_i32(ratio * c.ready.len() as f64)));
    }
    let mut filled = c.ready.clone();
    for name in &c.missing {
        let value = match (ratio < 1.0, target) {
            (false, _) => 0,
            (true, PodTarget::AverageValue(t)) => *t,
            (true, PodTarget::Utilization { .. }) => requests.get(name).copied().unwrap_or(0),
        };
        filled.insert(name.clone(), value);
    }
    if up_with_unready {
        for name in &c.unready {
            filled.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _, _) = ratio_of(&filled, target, &requests)?;
    let flipped = (ratio < 1.0 && new_ratio > 1.0) || (ratio > 1.0 && new_ratio < 1.0);
    if tol.within(new_ratio) || flipped {
        return Ok(keep(current_replicas));
    }
    let proposed = ceil_i32(new_ratio * filled.len() as f64);
    let wrong_way = (new_ratio < 1.0 && proposed > current_replicas)
        || (new_ratio > 1.0 && proposed < current_replicas);
    Ok(keep(if wrong_way {
        current_replicas
    } else {
        proposed
    }))
}

/// Sum of container requests per pod, for utilization targets only.
fn pod_requests(pods: &[PodView], target: &PodTarget) -> Result<BTreeMap<String, i64>, CalcError> {
    let PodTarget::Utilization {
        resource,
        container: only,
        ..
    } = target
    else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for pod in pods {
        let mut sum = 0i64;
        let wanted = pod
            .containers
            .iter()
            .filter(|(name, _)| only.as_ref().is_none_or(|o| o == name));
        for (container, requests) in wanted {
            let Some(r) = requests.get(resource) else {
                return Err(CalcError::MissingRequest {
                    resource: resource.to_owned(),
                    container: container.clone(),
                    pod: pod.name.clone(),
                });
            };
            sum = sum.saturating_add(*r);
        }
        out.insert(pod.name.clone(), sum);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_714_564_800 + s).unwrap()
    }

    fn pod(name: &str, phase: &str, cpu_request: Option<i64>) -> PodView {
        let requests =
            cpu_request.map_or_else(BTreeMap::new, |r| BTreeMap::from([("cpu".to_owned(), r)]));
        PodView {
            name: name.to_owned(),
            phase: phase.to_owned(),
            deleting: false,
            ready: Some((phase == "Running", Some(t(0)))),
            start_time: Some(t(0)),
            containers: vec![("app".to_owned(), requests)],
        }
    }

    fn samples(values: &[(&str, i64)]) -> BTreeMap<String, Sample> {
        values
            .iter()
            .map(|(n, v)| {
                let s = Sample {
                    value: *v,
                    timestamp: Some(t(600)),
                    window: SignedDuration::from_secs(60),
                };
                ((*n).to_owned(), s)
            })
            .collect()
    }

    const TOL: Tolerance = Tolerance { up: 0.1, down: 0.1 };

    #[rstest]
    #[case::all_ready_scale_up(&["a", "b"], &[], &[("a", 20), ("b", 20)], 2, 4)]
    #[case::missing_pod_counts_zero_on_scale_up(&["a", "b", "c"], &[], &[("a", 20), ("b", 20)], 3, 4)]
    #[case::missing_pod_counts_target_on_scale_down(&["a", "b", "c"], &[], &[("a", 5), ("b", 5)], 3, 2)]
    #[case::unready_pods_dampen_scale_up(&["a", "b"], &["p", "q"], &[("a", 20), ("b", 20)], 4, 4)]
    #[case::within_tolerance(&["a", "b"], &[], &[("a", 10), ("b", 10)], 2, 2)]
    #[case::flip_keeps_current(&["a"], &["p", "q", "r", "s"], &[("a", 15)], 5, 5)]
    fn hpa_pods_metric_average_value(
        #[case] running: &[&str],
        #[case] pending: &[&str],
        #[case] values: &[(&str, i64)],
        #[case] current: i32,
        #[case] expected: i32,
    ) {
        let mut pods: Vec<_> = running
            .iter()
            .map(|n| pod(n, "Running", Some(500)))
            .collect();
        pods.extend(pending.iter().map(|n| pod(n, "Pending", Some(500))));
        let got = pods_metric(
            &pods,
            &samples(values),
            &PodTarget::AverageValue(10),
            current,
            TOL,
            None,
        );
        assert_eq!(got.map(|p| p.replicas), Ok(expected));
    }

    fn cpu_target(percent: i32) -> PodTarget {
        PodTarget::Utilization {
            percent,
            resource: "cpu".to_owned(),
            container: None,
        }
    }

    #[test]
    fn hpa_resource_utilization_uses_requests() {
        let pods = vec![
            pod("a", "Running", Some(500)),
            pod("b", "Running", Some(500)),
        ];
        let cpu = CpuReadiness {
            now: t(600),
            initialization: SignedDuration::from_secs(300),
            initial_delay: SignedDuration::from_secs(30),
        };
        let got = pods_metric(
            &pods,
            &samples(&[("a", 400), ("b", 400)]),
            &cpu_target(50),
            2,
            TOL,
            Some(cpu),
        );
        assert_eq!(
            got,
            Ok(PodsProposal {
                replicas: 4,
                utilization: Some(80),
                average: 400
            })
        );
    }

    #[rstest]
    #[case::no_pods(vec![], CalcError::NoPods)]
    #[case::only_terminal_pods(vec![pod("a", "Succeeded", Some(1))], CalcError::NoUsableSamples)]
    #[case::missing_request(vec![pod("a", "Running", None)], CalcError::MissingRequest {
        resource: "cpu".to_owned(), container: "app".to_owned(), pod: "a".to_owned() })]
    fn hpa_resource_metric_errors(#[case] pods: Vec<PodView>, #[case] err: CalcError) {
        let got = pods_metric(&pods, &samples(&[("a", 1)]), &cpu_target(50), 1, TOL, None);
        assert_eq!(got, Err(err));
    }

    #[rstest]
    #[case::nan_is_never_within(f64::NAN, false)]
    #[case::infinity_is_never_within(f64::INFINITY, false)]
    #[case::upper_edge_is_within(1.1, true)]
    #[case::lower_edge_is_within(0.9, true)]
    fn hpa_tolerance_interval_rule(#[case] ratio: f64, #[case] within: bool) {
        assert_eq!(TOL.within(ratio), within);
    }

    #[test]
    fn hpa_average_value_with_zero_status_replicas_scales_from_usage() {
        assert_eq!(
            average_value(35_000, 10_000, 0, TOL),
            Proposal {
                replicas: 4,
                current: 0
            }
        );
        assert_eq!(
            average_value(0, 10_000, 0, TOL),
            Proposal {
                replicas: 0,
                current: 0
            }
        );
        assert_eq!(ceil_i32(f64::MAX), i32::MAX);
    }
}
