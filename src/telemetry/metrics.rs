//! The process's one Prometheus registry and the typed methods that feed it.
//!
//! KEDA's families keep KEDA's exact names, types, help texts and label sets
//! (`pkg/metricscollector/prommetrics.go`, reference §2.13), so the Grafana dashboard and alerts
//! written for KEDA keep working when tidescale replaces it. tidescale's own families are named
//! `tidescale_<subsystem>_<thing>_<unit>`.
//!
//! Cardinality is bounded by construction: label values are namespaces, object names, trigger
//! types and indexes, or `&'static str` kinds chosen in code — never error text or metric
//! values — and [`Metrics::forget_object`] drops every series of a deleted ScaledObject.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, HistogramTimer, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tracing::warn;

use super::object_series::{ObjectSeries, TriggerLabels};
use super::object_text;

/// Content type of [`Metrics::render`]'s output: the text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// KEDA reports cluster-scoped resources under this namespace.
const CLUSTER_SCOPE_NAMESPACE: &str = "default";

/// Buckets of the poll lateness histogram: a healthy scheduler stays in the first few, a
/// saturated one (every poll slot busy) shows up in the seconds. Fine below 100 ms, where
/// the targets are (p99 ≤ 5 ms at 1,000 objects, ≤ 50 ms at 10,000: performance.md T5).
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.035, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];
/// Buckets of the reconcile duration histogram (API round-trips, so milliseconds to seconds).
const RECONCILE_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Which kind of scalable resource a series belongs to (KEDA's `type` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResourceType {
    /// A ScaledObject (`scaledobject`).
    #[default]
    ScaledObject,
    /// A ScaledJob (`scaledjob`).
    ScaledJob,
}

impl ResourceType {
    /// The label value KEDA uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaledObject => "scaledobject",
            Self::ScaledJob => "scaledjob",
        }
    }
}

/// A KEDA custom resource kind, as counted by `keda_resource_registered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisteredResource {
    /// `scaled_object`.
    ScaledObject,
    /// `scaled_job`.
    ScaledJob,
    /// `trigger_authentication`.
    TriggerAuthentication,
    /// `cluster_trigger_authentication` (cluster-scoped: counted under namespace `default`).
    ClusterTriggerAuthentication,
    /// `cloudevent_source`.
    CloudEventSource,
}

impl RegisteredResource {
    /// The label value KEDA uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaledObject => "scaled_object",
            Self::ScaledJob => "scaled_job",
            Self::TriggerAuthentication => "trigger_authentication",
            Self::ClusterTriggerAuthentication => "cluster_trigger_authentication",
            Self::CloudEventSource => "cloudevent_source",
        }
    }
}

/// Identifies one trigger of one scaled resource: the label set of KEDA's per-scaler families.
#[derive(Debug, Clone, Copy)]
pub struct PollLabels<'a> {
    /// Namespace of the scaled resource.
    pub namespace: &'a str,
    /// Name of the scaled resource (the `scaledObject` label, also for ScaledJobs as in KEDA).
    pub scaled_object: &'a str,
    /// Trigger name when set, else the scaler's type name (KEDA's `scaler` label).
    pub scaler: &'a str,
    /// Position of the trigger in `spec.triggers`.
    pub trigger_index: usize,
    /// External metric name the HPA reads (`s0-rabbitmq-orders`).
    pub metric: &'a str,
    /// ScaledObject or ScaledJob.
    pub resource_type: ResourceType,
}

impl PollLabels<'_> {
    fn object(&self) -> (&str, &str) {
        (self.namespace, self.scaled_object)
    }

    fn trigger(&self) -> TriggerLabels<'_> {
        TriggerLabels {
            metric: self.metric,
            scaler: self.scaler,
            index: self.trigger_index,
            resource_type: self.resource_type,
        }
    }
}

/// KEDA's families, with KEDA's names, help texts and labels; the per-object ones (and
/// tidescale's build counter) in [`ObjectSeries`].
struct KedaFamilies {
    build_info: GaugeVec,
    objects: ObjectSeries,
    triggers_registered: GaugeVec,
    resources_registered: GaugeVec,
}

/// tidescale's own families.
struct OwnFamilies {
    poll_lateness: Histogram,
    api_writes: IntCounterVec,
    backend_connections: IntGaugeVec,
    reconcile_duration: Histogram,
    reconcile_errors: IntCounterVec,
    api_requests: IntCounterVec,
    leader: prometheus::IntGauge,
}

/// Every metric the operator exports, behind typed methods. Cheap to share in an `Arc`; all
/// methods take `&self`.
pub struct Metrics {
    registry: Registry,
    keda: KedaFamilies,
    own: OwnFamilies,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered and `keda_build_info` set.
    pub fn new() -> Self {
        let registry = Registry::new();
        let keda = KedaFamilies::register(&registry);
        let own = OwnFamilies::register(&registry);
        let metrics = Self {
            registry,
            keda,
            own,
        };
        metrics.record_build_info();
        metrics
    }

    /// The underlying registry, for collectors registered elsewhere (it is the only one).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything, in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let registered = self.registry.gather();
        let objects = self.keda.objects.snapshot();
        let series: usize = objects
            .iter()
            .map(|(_, _, e)| e.triggers.len() * 4 + 4)
            .sum();
        let mut text = String::with_capacity(series * object_text::BYTES_PER_SERIES + 16_384);
        // Families by name, as `Registry::gather` orders them: the per-object ones are written
        // directly (see `object_text`), in their place among the registered ones.
        let mut ours = ObjectSeries::family_names().collect::<Vec<_>>();
        ours.sort_by_key(|(name, _)| *name);
        let mut ours = ours.into_iter().peekable();
        let encoder = TextEncoder::new();
        for family in &registered {
            while let Some((_, next)) = ours.next_if(|(name, _)| *name < family.name()) {
                object_text::write_family(&mut text, next, &objects);
            }
            if let Err(error) = encoder.encode_utf8(std::slice::from_ref(family), &mut text) {
                warn!(error = %error, "cannot encode metrics");
            }
        }
        for (_, family) in ours {
            object_text::write_family(&mut text, family, &objects);
        }
        text
    }

    /// One successful trigger query: its value, whether it is active, and how long it took.
    /// Also creates the trigger's error counters at zero so rate() works from the first error.
    pub fn record_poll(
        &self,
        labels: &PollLabels<'_>,
        value: f64,
        active: bool,
        latency: Duration,
    ) {
        let active = if active { 1.0 } else { 0.0 };
        let values = [value, latency.as_secs_f64(), active];
        self.keda
            .objects
            .polled(labels.object(), labels.trigger(), values);
    }

    /// One failed trigger query; counts against the trigger and its ScaledObject, like KEDA.
    pub fn record_scaler_error(&self, labels: &PollLabels<'_>) {
        self.keda.objects.failed(labels.object(), labels.trigger());
    }

    /// An error of a ScaledObject that is not one trigger's query (target unreadable, …).
    pub fn record_scaled_object_error(&self, namespace: &str, name: &str) {
        self.keda.objects.object_error(namespace, name);
    }

    /// Whether a ScaledObject is paused (`autoscaling.keda.sh/paused*` annotations).
    pub fn set_paused(&self, namespace: &str, name: &str, paused: bool) {
        self.keda.objects.set_paused(namespace, name, paused);
    }

    /// How late a ScaledObject's poll started compared with its schedule
    /// (`keda_internal_scale_loop_latency_seconds`, last value per object).
    pub fn record_scale_loop_latency(&self, namespace: &str, name: &str, lateness: Duration) {
        self.keda
            .objects
            .set_loop_latency(namespace, name, lateness.as_secs_f64());
    }

    /// How late any poll started compared with its schedule, as a distribution over all
    /// objects (`tidescale_scaling_poll_lateness_seconds`).
    pub fn record_poll_lateness(&self, lateness: Duration) {
        self.own.poll_lateness.observe(lateness.as_secs_f64());
    }

    /// A trigger of `trigger_type` (`rabbitmq`, `kafka`, …) was registered with the scheduler.
    pub fn trigger_registered(&self, trigger_type: &str) {
        if !trigger_type.is_empty() {
            self.keda
                .triggers_registered
                .with_label_values(&[trigger_type])
                .inc();
        }
    }

    /// A trigger of `trigger_type` was removed from the scheduler.
    pub fn trigger_unregistered(&self, trigger_type: &str) {
        if !trigger_type.is_empty() {
            self.keda
                .triggers_registered
                .with_label_values(&[trigger_type])
                .dec();
        }
    }

    /// A custom resource appeared (`namespace` is ignored for cluster-scoped kinds).
    pub fn resource_registered(&self, kind: RegisteredResource, namespace: &str) {
        self.resources_gauge(kind, namespace).inc();
    }

    /// A custom resource went away.
    pub fn resource_unregistered(&self, kind: RegisteredResource, namespace: &str) {
        self.resources_gauge(kind, namespace).dec();
    }

    /// One write to the Kubernetes API, e.g. `("HorizontalPodAutoscaler", "apply")` or
    /// `("Scale", "patch")`. Both labels are code constants, which keeps the family bounded.
    pub fn record_api_write(&self, kind: &'static str, verb: &'static str) {
        self.own.api_writes.with_label_values(&[kind, verb]).inc();
    }

    /// Open connections of a shared backend pool, by scaler type.
    pub fn set_backend_connections(&self, scaler: &str, connections: i64) {
        self.own
            .backend_connections
            .with_label_values(&[scaler])
            .set(connections);
    }

    /// A drop guard that observes `tidescale_reconcile_duration_seconds` when it goes out of
    /// scope, so every return path of `reconcile` is measured.
    pub fn reconcile_timer(&self) -> HistogramTimer {
        self.own.reconcile_duration.start_timer()
    }

    /// A failed reconcile, by the error's `kind()` (a code constant, never its text).
    pub fn record_reconcile_error(&self, kind: &'static str) {
        self.own.reconcile_errors.with_label_values(&[kind]).inc();
    }

    /// Drop every series of a deleted ScaledObject so cardinality follows the live objects.
    pub fn forget_object(&self, namespace: &str, name: &str) {
        self.keda.objects.forget(namespace, name);
    }

    fn resources_gauge(&self, kind: RegisteredResource, namespace: &str) -> prometheus::Gauge {
        let namespace = match kind {
            RegisteredResource::ClusterTriggerAuthentication => CLUSTER_SCOPE_NAMESPACE,
            _ if namespace.is_empty() => CLUSTER_SCOPE_NAMESPACE,
            _ => namespace,
        };
        self.keda
            .resources_registered
            .with_label_values(&[kind.as_str(), namespace])
    }

    fn record_build_info(&self) {
        self.keda
            .build_info
            .with_label_values(&[
                env!("CARGO_PKG_VERSION"),
                option_env!("TIDESCALE_GIT_COMMIT").unwrap_or("unknown"),
                "rustc",
                std::env::consts::OS,
                std::env::consts::ARCH,
            ])
            .set(1.0);
    }
}

impl KedaFamilies {
    fn register(registry: &Registry) -> Self {
        Self {
            build_info: gauge_vec(
                registry,
                "keda_build_info",
                "Info metric, with static information about KEDA build like: version, git commit and Golang runtime info.",
                &["version", "git_commit", "goversion", "goos", "goarch"],
            ),
            objects: ObjectSeries::new(),
            triggers_registered: gauge_vec(
                registry,
                "keda_trigger_registered_total",
                "Total number of triggers per trigger type registered.",
                &["type"],
            ),
            resources_registered: gauge_vec(
                registry,
                "keda_resource_registered_total",
                "Total number of KEDA custom resources per namespace for each custom resource type (CRD) registered.",
                &["type", "namespace"],
            ),
        }
    }
}

impl OwnFamilies {
    fn register(registry: &Registry) -> Self {
        Self {
            poll_lateness: histogram(
                registry,
                "tidescale_scaling_poll_lateness_seconds",
                "Delay between when a poll was due and when it started, over all scaled objects.",
                LATENESS_BUCKETS,
            ),
            api_writes: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tidescale_api_writes_total",
                        "Writes to the Kubernetes API, by resource kind and verb.",
                    ),
                    &["kind", "verb"],
                ),
            ),
            backend_connections: register(
                registry,
                IntGaugeVec::new(
                    Opts::new(
                        "tidescale_backend_connections",
                        "Open connections of the shared backend pools, by scaler type.",
                    ),
                    &["scaler"],
                ),
            ),
            reconcile_duration: histogram(
                registry,
                "tidescale_reconcile_duration_seconds",
                "Duration of one reconcile of a ScaledObject.",
                RECONCILE_BUCKETS,
            ),
            reconcile_errors: register(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "tidescale_reconcile_errors_total",
                        "Failed reconciles, by error kind.",
                    ),
                    &["kind"],
                ),
            ),
            api_requests: api_requests_family(registry),
            leader: leader_family(registry),
        }
    }
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(registry, GaugeVec::new(Opts::new(name, help), labels))
}

fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    register(registry, Histogram::with_opts(opts))
}

/// Registers a family built from the constants above. Both steps fail only on an invalid name,
/// duplicate registration or bad buckets: programming errors caught by the unit tests.
fn register<C: Collector + Clone + 'static>(
    registry: &Registry,
    collector: prometheus::Result<C>,
) -> C {
    let collector = collector.expect("metric family definitions are valid constants");
    registry
        .register(Box::new(collector.clone()))
        .expect("each metric family is registered once");
    collector
}

// --- Scaler builds (controller: Secret rotation rebuilds only the objects that read it) ---

impl Metrics {
    /// The scalers of one ScaledObject were (re)built.
    pub fn record_scaler_build(&self, namespace: &str, name: &str) {
        self.keda.objects.build(namespace, name);
    }

    /// How many times the scalers of one ScaledObject were built.
    pub fn scaler_builds(&self, namespace: &str, name: &str) -> u64 {
        self.keda.objects.builds(namespace, name)
    }

    /// Drop the build counter of a deleted ScaledObject.
    pub fn forget_scaler_builds(&self, namespace: &str, name: &str) {
        self.keda.objects.forget_builds(namespace, name);
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;

// --- Kubernetes API requests (scaling loop: zero API calls per poll in steady state) ---

fn api_requests_family(registry: &Registry) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(
            Opts::new(
                "tidescale_api_requests_total",
                "Requests to the Kubernetes API, by verb (get, list, watch, create, update, patch, delete) and resource (plural, or plural/subresource).",
            ),
            &["verb", "resource"],
        ),
    )
}

impl Metrics {
    /// One request to the Kubernetes API. `resource` is a resource plural, optionally with
    /// `/subresource`, or `discovery`: bounded by the kinds the operator uses.
    pub fn record_api_request(&self, verb: &'static str, resource: &str) {
        self.own
            .api_requests
            .with_label_values(&[verb, resource])
            .inc();
    }
}

// --- Leader election (operator::leader: which replica polls and writes) ---

fn leader_family(registry: &Registry) -> prometheus::IntGauge {
    register(
        registry,
        prometheus::IntGauge::new(
            "tidescale_leader",
            "1 while this replica holds the leader Lease (always 1 without --leader-elect).",
        ),
    )
}

impl Metrics {
    /// Whether this replica leads (`tidescale_leader`).
    pub fn set_leader(&self, leading: bool) {
        self.own.leader.set(i64::from(leading));
    }
}
