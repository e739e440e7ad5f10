//! Evaluating `spec.metrics` into one proposal: per-metric dispatch with upstream's error
//! wording, `status.currentMetrics` entries, and the combination rule of
//! `spec/kubernetes.md` §3.5 (max over valid metrics, invalid-metric handling).
//!
//! The controller fetches raw data ([`MetricInput`]) and this module stays pure. Error texts are
//! built in three layers exactly like kube-controller-manager (metrics client → replica
//! calculator → controller), because users and tests grep HPA events for them.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::replicas::{
    self, CalcError, CpuReadiness, PodCount, PodTarget, PodView, Sample, Tolerance,
};
use super::spec::{MetricId, MetricSpec, TargetValue};
use crate::controllers::quantity::format_milli;
use crate::controllers::selector::LabelSelector;

/// Raw data the controller fetched for one metric; `Err` carries the metrics client's text
/// (e.g. `unable to fetch metrics from external metrics API: …`).
#[derive(Debug, Clone, PartialEq)]
pub enum MetricInput {
    /// Values of the External metric's items (milli).
    External(Result<Vec<i64>, String>),
    /// The Object metric's single value (milli).
    Object(Result<i64, String>),
    /// Per-pod values (Pods, Resource, ContainerResource metrics).
    PerPod(Result<BTreeMap<String, Sample>, String>),
    /// The metric type is unknown or its source is missing.
    Unsupported,
}

/// Everything besides the fetched data that a proposal depends on.
#[derive(Debug, Clone)]
pub struct MetricContext<'a> {
    /// HPA namespace (used in messages).
    pub namespace: &'a str,
    /// `scale.spec.replicas`.
    pub current_replicas: i32,
    /// `scale.status.replicas`.
    pub status_replicas: i32,
    /// Pods matching the scale selector.
    pub pods: &'a [PodView],
    /// Tolerance in force.
    pub tolerance: Tolerance,
    /// Timings for the CPU readiness rules.
    pub cpu: CpuReadiness,
}

/// A metric that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricFailure {
    /// Condition/event reason (`FailedGetExternalMetric`, …).
    pub reason: &'static str,
    /// Replica calculator error: event message, and condition message after a prefix.
    pub detail: String,
    /// Controller-level error (`failed to get … metric …`), used in the combined error.
    pub error: String,
}

/// A successful proposal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricProposal {
    /// Proposed replicas.
    pub replicas: i32,
    /// Description used in `ValidMetricFound` and rescale reasons.
    pub description: String,
}

/// Evaluation of one metric: its status entry and its proposal or failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricOutcome {
    /// `status.currentMetrics[i]` (`{"type": ""}` for a failure, like Go's zero value).
    pub status: Value,
    /// The proposal.
    pub result: Result<MetricProposal, MetricFailure>,
}

fn failed(reason: &'static str, detail: String, error: String) -> MetricOutcome {
    MetricOutcome {
        status: json!({"type": ""}),
        result: Err(MetricFailure {
            reason,
            detail,
            error,
        }),
    }
}

fn id_json(id: &MetricId) -> Value {
    // `selector` is omitempty in MetricIdentifier.
    match &id.selector {
        Some(s) => json!({"name": id.name, "selector": selector_json(s)}),
        None => json!({"name": id.name}),
    }
}

fn selector_json(s: &LabelSelector) -> Value {
    let mut v = json!({});
    if !s.match_labels.is_empty() {
        v["matchLabels"] = json!(s.match_labels);
    }
    if !s.match_expressions.is_empty() {
        v["matchExpressions"] = Value::Array(
            s.match_expressions
                .iter()
                .map(|e| json!({"key": e.key, "operator": e.operator, "values": e.values}))
                .collect(),
        );
    }
    v
}

fn pod_count(pods: &[PodView]) -> PodCount {
    let ready = pods
        .iter()
        .filter(|p| p.phase == "Running" && p.ready.is_some_and(|(r, _)| r))
        .count();
    PodCount {
        matched: pods.len(),
        ready,
    }
}

/// Evaluates one metric spec against its fetched input.
pub fn evaluate(spec: &MetricSpec, input: MetricInput, ctx: &MetricContext<'_>) -> MetricOutcome {
    match (spec.kind.as_str(), input) {
        ("External", MetricInput::External(values)) => match &spec.external {
            Some(src) => external(&src.metric, src.target.parse(), values, ctx),
            None => unsupported(spec),
        },
        ("Object", MetricInput::Object(value)) => match &spec.object {
            Some(src) => object(src, value, ctx),
            None => unsupported(spec),
        },
        ("Pods", MetricInput::PerPod(samples)) => pods(spec, samples, ctx),
        ("Resource" | "ContainerResource", MetricInput::PerPod(samples)) => {
            resource(spec, samples, ctx)
        }
        _ => unsupported(spec),
    }
}

fn unsupported(spec: &MetricSpec) -> MetricOutcome {
    let msg = format!("unknown metric source type {:?}", spec.kind);
    failed("InvalidMetricSourceType", msg.clone(), msg)
}

/// An External (or Object) target after validation: exactly one of the two kinds.
#[derive(Debug, Clone, Copy)]
enum ValueTarget {
    /// `target.averageValue`, milli.
    Average(i64),
    /// `target.value`, milli.
    Total(i64),
}

fn external(
    id: &MetricId,
    target: Option<TargetValue>,
    values: Result<Vec<i64>, String>,
    ctx: &MetricContext<'_>,
) -> MetricOutcome {
    const REASON: &str = "FailedGetExternalMetric";
    let sel = LabelSelector::go_string(id.selector.as_ref());
    let target = match target {
        Some(TargetValue::AverageValue(a)) => ValueTarget::Average(a),
        Some(TargetValue::Value(v)) => ValueTarget::Total(v),
        _ => {
            let msg = "invalid external metric source: neither a value target nor an average \
                       value target was set";
            return failed(REASON, msg.to_owned(), msg.to_owned());
        }
    };
    // Upstream words the two target kinds' errors differently.
    let failure = |e: String| {
        let d = format!(
            "unable to get external metric {}/{}/{sel}: {e}",
            ctx.namespace, id.name
        );
        let error = match target {
            ValueTarget::Average(_) => format!("failed to get {} external metric: {d}", id.name),
            ValueTarget::Total(_) => format!("failed to get external metric {}: {d}", id.name),
        };
        failed(REASON, d, error)
    };
    let usage = match values {
        Ok(v) => replicas::sum_usage(&v),
        Err(e) => return failure(e),
    };
    let description = format!("external metric {}({sel})", id.name);
    let ok = |status, replicas| MetricOutcome {
        status,
        result: Ok(MetricProposal {
            replicas,
            description,
        }),
    };
    let external = |current: Value| json!({"type": "External", "external": {"metric": id_json(id), "current": current}});
    match target {
        ValueTarget::Average(avg) => {
            let p = replicas::average_value(usage, avg, ctx.status_replicas, ctx.tolerance);
            ok(
                external(json!({"averageValue": format_milli(p.current)})),
                p.replicas,
            )
        }
        ValueTarget::Total(value) => {
            let status = |current| external(json!({"value": format_milli(current)}));
            match value_target(value, usage, ctx, status) {
                Ok((status, replicas)) => ok(status, replicas),
                Err(e) => failure(format!("unable to calculate ready pods: {e}")),
            }
        }
    }
}

/// The Value-target computation shared by External and Object metrics.
fn value_target(
    target: i64,
    usage: i64,
    ctx: &MetricContext<'_>,
    status: impl Fn(i64) -> Value,
) -> Result<(Value, i32), CalcError> {
    let (current, pods) = (ctx.current_replicas, pod_count(ctx.pods));
    let p = replicas::value(usage, target, current, pods, ctx.tolerance)?;
    Ok((status(p.current), p.replicas))
}

fn object(
    src: &super::spec::ObjectSource,
    value: Result<i64, String>,
    ctx: &MetricContext<'_>,
) -> MetricOutcome {
    const REASON: &str = "FailedGetObjectMetric";
    let obj = &src.described_object;
    let wrap = |e: String| {
        let d = format!(
            "unable to get metric {}: {} on {} {}/{}",
            src.metric.name, obj.kind, ctx.namespace, obj.name, e
        );
        failed(
            REASON,
            d.clone(),
            format!("failed to get object metric value: {d}"),
        )
    };
    let usage = match value {
        Ok(v) => v,
        Err(e) => return wrap(e),
    };
    let described = json!({"apiVersion": obj.api_version, "kind": obj.kind, "name": obj.name});
    match src.target.parse() {
        Some(TargetValue::AverageValue(avg)) => {
            let p = replicas::average_value(usage, avg, ctx.status_replicas, ctx.tolerance);
            let sel = LabelSelector::go_string(src.metric.selector.as_ref());
            MetricOutcome {
                status: json!({"type": "Object", "object": {"metric": id_json(&src.metric),
                    "describedObject": described, "current": {"averageValue": format_milli(p.current)}}}),
                // Upstream reuses the External wording here (§3.3 "upstream quirk").
                result: Ok(MetricProposal {
                    replicas: p.replicas,
                    description: format!("external metric {}({sel})", src.metric.name),
                }),
            }
        }
        Some(TargetValue::Value(t)) => match value_target(t, usage, ctx, |current| {
            json!({"type": "Object", "object": {"metric": id_json(&src.metric),
                "describedObject": described, "current": {"value": format_milli(current)}}})
        }) {
            Ok((status, replicas)) => MetricOutcome {
                status,
                result: Ok(MetricProposal {
                    replicas,
                    description: format!("{} metric {}", obj.kind, src.metric.name),
                }),
            },
            Err(e) => wrap(format!("unable to calculate ready pods: {e}")),
        },
        _ => {
            let msg = "invalid object metric source: neither a value target nor an average value \
                       target was set"
                .to_owned();
            failed(REASON, msg.clone(), msg)
        }
    }
}

fn pods(
    spec: &MetricSpec,
    samples: Result<BTreeMap<String, Sample>, String>,
    ctx: &MetricContext<'_>,
) -> MetricOutcome {
    const REASON: &str = "FailedGetPodsMetric";
    let Some(src) = &spec.pods else {
        return unsupported(spec);
    };
    let Some(TargetValue::AverageValue(avg)) = src.target.parse() else {
        let msg = "invalid pods metric source: average value target not set".to_owned();
        return failed(REASON, msg.clone(), msg);
    };
    let result = samples.and_then(|s| {
        replicas::pods_metric(
            ctx.pods,
            &s,
            &PodTarget::AverageValue(avg),
            ctx.current_replicas,
            ctx.tolerance,
            None,
        )
        .map_err(|e| e.to_string())
    });
    match result {
        Ok(p) => MetricOutcome {
            status: json!({"type": "Pods", "pods": {"metric": id_json(&src.metric),
                "current": {"averageValue": format_milli(p.average)}}}),
            result: Ok(MetricProposal {
                replicas: p.replicas,
                description: format!("pods metric {}", src.metric.name),
            }),
        },
        Err(e) => {
            let d = format!("unable to get metric {}: {e}", src.metric.name);
            failed(
                REASON,
                d.clone(),
                format!("failed to get pods metric value: {d}"),
            )
        }
    }
}

/// The names a Resource or ContainerResource metric uses in errors and status.
struct ResourceKind {
    reason: &'static str,
    field: &'static str,
    word: &'static str,
    container: bool,
}

impl ResourceKind {
    fn of(spec: &MetricSpec) -> (Self, &Option<super::spec::ResourceSource>) {
        if spec.kind == "ContainerResource" {
            let kind = Self {
                reason: "FailedGetContainerResourceMetric",
                field: "containerResource",
                word: "container resource",
                container: true,
            };
            (kind, &spec.container_resource)
        } else {
            let kind = Self {
                reason: "FailedGetResourceMetric",
                field: "resource",
                word: "resource",
                container: false,
            };
            (kind, &spec.resource)
        }
    }
}

fn resource(
    spec: &MetricSpec,
    samples: Result<BTreeMap<String, Sample>, String>,
    ctx: &MetricContext<'_>,
) -> MetricOutcome {
    let container = spec.kind == "ContainerResource";
    let (kind, src) = ResourceKind::of(spec);
    let Some(src) = src else {
        return unsupported(spec);
    };
    let target = match src.target.parse() {
        Some(TargetValue::Utilization(percent)) => PodTarget::Utilization {
            percent,
            resource: src.name.clone(),
            container: src.container.clone().filter(|_| container),
        },
        Some(TargetValue::AverageValue(avg)) => PodTarget::AverageValue(avg),
        _ => {
            let word = kind.word;
            let msg = format!(
                "invalid {word} metric source: neither a utilization target nor a value target was set"
            );
            return failed(kind.reason, msg.clone(), msg);
        }
    };
    let cpu = (src.name == "cpu").then_some(ctx.cpu);
    let result = samples.and_then(|s| {
        replicas::pods_metric(
            ctx.pods,
            &s,
            &target,
            ctx.current_replicas,
            ctx.tolerance,
            cpu,
        )
        .map_err(|e| e.to_string())
    });
    let utilization = matches!(target, PodTarget::Utilization { .. });
    match result {
        Ok(p) => resource_outcome(spec, src, &kind, p),
        Err(e) => {
            let d = format!("unable to get metrics for resource {}: {e}", src.name);
            let what = if utilization { "utilization" } else { "usage" };
            let error = format!("failed to get {} {what}: {d}", src.name);
            failed(kind.reason, d, error)
        }
    }
}

fn resource_outcome(
    spec: &MetricSpec,
    src: &super::spec::ResourceSource,
    kind: &ResourceKind,
    p: replicas::PodsProposal,
) -> MetricOutcome {
    let mut current = json!({"averageValue": format_milli(p.average)});
    if let Some(u) = p.utilization {
        current["averageUtilization"] = json!(u);
    }
    let mut status = json!({"type": spec.kind, kind.field: {"name": src.name, "current": current}});
    if let Some(c) = src.container.as_ref().filter(|_| kind.container) {
        status[kind.field]["container"] = json!(c);
    }
    let description = match p.utilization {
        Some(_) => format!(
            "{} {} utilization (percentage of request)",
            src.name, kind.word
        ),
        None => format!("{} {}", src.name, kind.word),
    };
    MetricOutcome {
        status,
        result: Ok(MetricProposal {
            replicas: p.replicas,
            description,
        }),
    }
}

/// The combined outcome of all metrics (§3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Combined {
    /// Scaling may proceed with this proposal.
    Proposal(MetricProposal),
    /// No scaling this cycle.
    Invalid {
        /// The first failure (sets the `ScalingActive` condition).
        first: MetricFailure,
        /// `invalid metrics (N invalid out of M), first error is: …`.
        error: String,
    },
}

/// Max over valid metrics; invalid when all failed or when some failed and the rest would
/// scale down (§3.5).
pub fn combine(outcomes: &[MetricOutcome], current_replicas: i32) -> Combined {
    let mut best: Option<&MetricProposal> = None;
    let mut first: Option<&MetricFailure> = None;
    let mut invalid = 0usize;
    for outcome in outcomes {
        match &outcome.result {
            Ok(p) => {
                if best.is_none_or(|b| b.replicas == 0 || p.replicas > b.replicas) {
                    best = Some(p);
                }
            }
            Err(f) => {
                first.get_or_insert(f);
                invalid += 1;
            }
        }
    }
    let replicas = best.map_or(0, |b| b.replicas);
    match (first, best) {
        (Some(f), _) if invalid >= outcomes.len() || replicas < current_replicas => {
            Combined::Invalid {
                first: f.clone(),
                error: format!(
                    "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                    outcomes.len(),
                    f.error
                ),
            }
        }
        (_, Some(b)) => Combined::Proposal(b.clone()),
        // No metrics at all cannot happen (the API defaults to CPU); treat as "keep".
        (_, None) => Combined::Proposal(MetricProposal {
            replicas: current_replicas,
            description: String::new(),
        }),
    }
}
