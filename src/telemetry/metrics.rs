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

use std::collections::HashMap;
use std::time::Duration;

use prometheus::core::{Collector, MetricVec, MetricVecBuilder};
use prometheus::{
    CounterVec, GaugeVec, Histogram, HistogramOpts, HistogramTimer, IntCounterVec, IntGaugeVec,
    Opts, Registry, TextEncoder,
};
use tracing::warn;

/// Content type of [`Metrics::render`]'s output: the text exposition format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus::TEXT_FORMAT;

/// Labels of KEDA's per-trigger families (`metricLabels` in KEDA).
const SCALER_LABELS: &[&str] = &[
    "namespace",
    "metric",
    "scaledObject",
    "scaler",
    "triggerIndex",
    "type",
];
/// Labels of KEDA's per-ScaledObject families.
const OBJECT_LABELS: &[&str] = &["namespace", "scaledObject"];
/// Label that names the object in `keda_internal_scale_loop_latency_seconds`.
const LOOP_OBJECT_LABEL: &str = "resource";
/// KEDA reports cluster-scoped resources under this namespace.
const CLUSTER_SCOPE_NAMESPACE: &str = "default";

/// Buckets of the poll lateness histogram: a healthy scheduler stays in the first few, a
/// saturated one (every poll slot busy) shows up in the seconds.
const LATENESS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
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
    /// Values in the order of [`SCALER_LABELS`].
    fn values(&self, trigger_index: &str) -> [String; 6] {
        [
            self.namespace.to_owned(),
            self.metric.to_owned(),
            self.scaled_object.to_owned(),
            self.scaler.to_owned(),
            trigger_index.to_owned(),
            self.resource_type.as_str().to_owned(),
        ]
    }
}

/// KEDA's families, with KEDA's names, help texts and labels.
struct KedaFamilies {
    build_info: GaugeVec,
    scaler_value: GaugeVec,
    scaler_latency: GaugeVec,
    scaler_active: GaugeVec,
    scaler_errors: CounterVec,
    object_errors: CounterVec,
    object_paused: GaugeVec,
    triggers_registered: GaugeVec,
    resources_registered: GaugeVec,
    loop_latency: GaugeVec,
}

/// tidescale's own families.
struct OwnFamilies {
    poll_lateness: Histogram,
    api_writes: IntCounterVec,
    backend_connections: IntGaugeVec,
    reconcile_duration: Histogram,
    reconcile_errors: IntCounterVec,
    scaler_builds: IntCounterVec,
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
        let mut text = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut text) {
            warn!(error = %error, "cannot encode metrics");
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
        let index = labels.trigger_index.to_string();
        let values = labels.values(&index);
        let keda = &self.keda;
        keda.scaler_value.with_label_values(&values).set(value);
        keda.scaler_latency
            .with_label_values(&values)
            .set(latency.as_secs_f64());
        keda.scaler_active
            .with_label_values(&values)
            .set(if active { 1.0 } else { 0.0 });
        keda.scaler_errors.with_label_values(&values);
        keda.object_errors
            .with_label_values(&[labels.namespace, labels.scaled_object]);
    }

    /// One failed trigger query; counts against the trigger and its ScaledObject, like KEDA.
    pub fn record_scaler_error(&self, labels: &PollLabels<'_>) {
        let index = labels.trigger_index.to_string();
        self.keda
            .scaler_errors
            .with_label_values(&labels.values(&index))
            .inc();
        self.record_scaled_object_error(labels.namespace, labels.scaled_object);
    }

    /// An error of a ScaledObject that is not one trigger's query (target unreadable, …).
    pub fn record_scaled_object_error(&self, namespace: &str, name: &str) {
        self.keda
            .object_errors
            .with_label_values(&[namespace, name])
            .inc();
    }

    /// Whether a ScaledObject is paused (`autoscaling.keda.sh/paused*` annotations).
    pub fn set_paused(&self, namespace: &str, name: &str, paused: bool) {
        self.keda
            .object_paused
            .with_label_values(&[namespace, name])
            .set(if paused { 1.0 } else { 0.0 });
    }

    /// How late a ScaledObject's poll started compared with its schedule
    /// (`keda_internal_scale_loop_latency_seconds`, last value per object).
    pub fn record_scale_loop_latency(&self, namespace: &str, name: &str, lateness: Duration) {
        self.keda
            .loop_latency
            .with_label_values(&[namespace, ResourceType::ScaledObject.as_str(), name])
            .set(lateness.as_secs_f64());
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
        let keda = &self.keda;
        for family in [
            &keda.scaler_value,
            &keda.scaler_latency,
            &keda.scaler_active,
            &keda.object_paused,
        ] {
            remove_object_series(family, "scaledObject", namespace, name);
        }
        for family in [&keda.scaler_errors, &keda.object_errors] {
            remove_object_series(family, "scaledObject", namespace, name);
        }
        remove_object_series(&keda.loop_latency, LOOP_OBJECT_LABEL, namespace, name);
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
            scaler_value: gauge_vec(
                registry,
                "keda_scaler_metrics_value",
                "The current value for each scaler's metric that would be used by the HPA in computing the target average.",
                SCALER_LABELS,
            ),
            scaler_latency: gauge_vec(
                registry,
                "keda_scaler_metrics_latency_seconds",
                "The latency of retrieving current metric from each scaler, in seconds.",
                SCALER_LABELS,
            ),
            scaler_active: gauge_vec(
                registry,
                "keda_scaler_active",
                "Indicates whether a scaler is active (1), or not (0).",
                SCALER_LABELS,
            ),
            scaler_errors: counter_vec(
                registry,
                "keda_scaler_detail_errors_total",
                "The total number of errors encountered for each scaler.",
                SCALER_LABELS,
            ),
            object_errors: counter_vec(
                registry,
                "keda_scaled_object_errors_total",
                "The number of errors that have occurred for each ScaledObject.",
                OBJECT_LABELS,
            ),
            object_paused: gauge_vec(
                registry,
                "keda_scaled_object_paused",
                "Indicates whether a ScaledObject is paused (1), or not (0).",
                OBJECT_LABELS,
            ),
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
            loop_latency: gauge_vec(
                registry,
                "keda_internal_scale_loop_latency_seconds",
                "Total deviation (in seconds) between the expected execution time and the actual execution time for the scaling loop.",
                &["namespace", "type", LOOP_OBJECT_LABEL],
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
            scaler_builds: scaler_builds_family(registry),
            api_requests: api_requests_family(registry),
            leader: leader_family(registry),
        }
    }
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    register(registry, GaugeVec::new(Opts::new(name, help), labels))
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> CounterVec {
    register(registry, CounterVec::new(Opts::new(name, help), labels))
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

/// Removes the series of `vec` whose `namespace` and `object_label` labels match. The
/// `prometheus` crate has no partial-match delete, so the live series are listed and each
/// match removed by its full label set.
fn remove_object_series<T: MetricVecBuilder>(
    vec: &MetricVec<T>,
    object_label: &str,
    namespace: &str,
    name: &str,
) {
    for family in vec.collect() {
        for metric in family.get_metric() {
            let labels: HashMap<&str, &str> = metric
                .get_label()
                .iter()
                .map(|pair| (pair.name(), pair.value()))
                .collect();
            let matches = labels.get("namespace") == Some(&namespace)
                && labels.get(object_label) == Some(&name);
            if matches {
                // Fails only if a concurrent forget removed it first: nothing left to do.
                let _ = vec.remove(&labels);
            }
        }
    }
}

// --- Scaler builds (controller: Secret rotation rebuilds only the objects that read it) ---

fn scaler_builds_family(registry: &Registry) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(
            Opts::new(
                "tidescale_scaler_builds_total",
                "Times the scalers of a ScaledObject were built (spec change, or resolved auth or env change).",
            ),
            OBJECT_LABELS,
        ),
    )
}

impl Metrics {
    /// The scalers of one ScaledObject were (re)built.
    pub fn record_scaler_build(&self, namespace: &str, name: &str) {
        self.own
            .scaler_builds
            .with_label_values(&[namespace, name])
            .inc();
    }

    /// How many times the scalers of one ScaledObject were built.
    pub fn scaler_builds(&self, namespace: &str, name: &str) -> u64 {
        self.own
            .scaler_builds
            .get_metric_with_label_values(&[namespace, name])
            .map_or(0, |c| c.get())
    }

    /// Drop the build counter of a deleted ScaledObject.
    pub fn forget_scaler_builds(&self, namespace: &str, name: &str) {
        // Fails only when the series never existed: nothing to drop.
        let _ = self
            .own
            .scaler_builds
            .remove_label_values(&[namespace, name]);
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
