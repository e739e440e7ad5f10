//! KEDA's per-ScaledObject and per-trigger series (and tidescale's scaler-build counter), kept
//! as a few numbers per object and written as text only when scraped (`object_text`).
//!
//! Why not `GaugeVec`/`CounterVec`: the `prometheus` crate stores, for every series, its own
//! copy of the family's descriptor (name, help text, label names) and its label pairs as
//! protobuf messages — about a kilobyte per series, and an object has eight. At 10,000 objects
//! that was 80 MiB, more than everything else the operator keeps per object (issue #5's target
//! is 10 KiB per object in all). Here an object costs its two names, one entry per trigger and
//! a handful of `f64`s; the text a scrape renders is unchanged (same names, help texts, types,
//! labels and order).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use prometheus::proto::MetricType;

use super::metrics::ResourceType;
use super::object_text::Snapshot;

/// `keda_scaler_*` label names, in KEDA's order.
pub(super) const SCALER_LABELS: &[&str] = &[
    "namespace",
    "metric",
    "scaledObject",
    "scaler",
    "triggerIndex",
    "type",
];
/// Labels of the per-ScaledObject families.
pub(super) const OBJECT_LABELS: &[&str] = &["namespace", "scaledObject"];
/// Labels of `keda_internal_scale_loop_latency_seconds`.
const LOOP_LABELS: &[&str] = &["namespace", "type", "resource"];

/// The families, with KEDA's names and help texts: (name, help, type, labels).
pub(super) const FAMILIES: [(&str, &str, MetricType, &[&str]); 8] = [
    (
        "keda_scaler_metrics_value",
        "The current value for each scaler's metric that would be used by the HPA in computing the target average.",
        MetricType::GAUGE,
        SCALER_LABELS,
    ),
    (
        "keda_scaler_metrics_latency_seconds",
        "The latency of retrieving current metric from each scaler, in seconds.",
        MetricType::GAUGE,
        SCALER_LABELS,
    ),
    (
        "keda_scaler_active",
        "Indicates whether a scaler is active (1), or not (0).",
        MetricType::GAUGE,
        SCALER_LABELS,
    ),
    (
        "keda_scaler_detail_errors_total",
        "The total number of errors encountered for each scaler.",
        MetricType::COUNTER,
        SCALER_LABELS,
    ),
    (
        "keda_scaled_object_errors_total",
        "The number of errors that have occurred for each ScaledObject.",
        MetricType::COUNTER,
        OBJECT_LABELS,
    ),
    (
        "keda_scaled_object_paused",
        "Indicates whether a ScaledObject is paused (1), or not (0).",
        MetricType::GAUGE,
        OBJECT_LABELS,
    ),
    (
        "keda_internal_scale_loop_latency_seconds",
        "Total deviation (in seconds) between the expected execution time and the actual execution time for the scaling loop.",
        MetricType::GAUGE,
        LOOP_LABELS,
    ),
    (
        "tidescale_scaler_builds_total",
        "Times the scalers of a ScaledObject were built (spec change, or resolved auth or env change).",
        MetricType::COUNTER,
        OBJECT_LABELS,
    ),
];

/// Index into [`FAMILIES`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Family {
    ScalerValue = 0,
    ScalerLatency,
    ScalerActive,
    ScalerErrors,
    ObjectErrors,
    ObjectPaused,
    LoopLatency,
    ScalerBuilds,
}

/// Namespace → name → series; `Arc` so a scrape copies the table without copying strings.
type Table = HashMap<Arc<str>, HashMap<Arc<str>, Entry>>;

/// One trigger's series (one metric of it): the labels beyond the object's, and the values.
#[derive(Debug, Clone)]
pub(super) struct Trigger {
    pub(super) metric: Arc<str>,
    pub(super) scaler: Arc<str>,
    pub(super) index: usize,
    pub(super) resource_type: ResourceType,
    /// Value, latency and active (0/1), once a query succeeded.
    pub(super) polled: Option<[f64; 3]>,
    pub(super) errors: f64,
}

/// Every series of one object; `None` where the series does not exist (yet).
#[derive(Debug, Clone, Default)]
pub(super) struct Entry {
    pub(super) triggers: Vec<Trigger>,
    pub(super) errors: Option<f64>,
    pub(super) paused: Option<f64>,
    pub(super) loop_latency: Option<f64>,
    pub(super) builds: Option<f64>,
}

impl Entry {
    fn is_empty(&self) -> bool {
        self.triggers.is_empty()
            && self.errors.is_none()
            && self.paused.is_none()
            && self.loop_latency.is_none()
            && self.builds.is_none()
    }
}

/// The labels identifying one trigger series within its object.
#[derive(Debug, Clone, Copy)]
pub(super) struct TriggerLabels<'a> {
    pub(super) metric: &'a str,
    pub(super) scaler: &'a str,
    pub(super) index: usize,
    pub(super) resource_type: ResourceType,
}

/// The table, shared by [`super::Metrics`] and its scrapes.
#[derive(Clone)]
pub(super) struct ObjectSeries {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Mutex<Table>,
}

impl ObjectSeries {
    pub(super) fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                objects: Mutex::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.inner
            .objects
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Change the entry of `namespace/name`, creating it; dropped again when left empty.
    /// Looked up by `&str`: the common case (the entry exists) allocates nothing.
    fn update(&self, namespace: &str, name: &str, change: impl FnOnce(&mut Entry)) {
        let mut objects = self.lock();
        if !objects.contains_key(namespace) {
            objects.insert(namespace.into(), HashMap::new());
        }
        let Some(names) = objects.get_mut(namespace) else {
            return;
        };
        if !names.contains_key(name) {
            names.insert(name.into(), Entry::default());
        }
        let Some(entry) = names.get_mut(name) else {
            return;
        };
        change(entry);
        if entry.is_empty() {
            names.remove(name);
            if names.is_empty() {
                objects.remove(namespace);
            }
        }
    }

    /// A successful query: value, latency (s) and activity; creates the error counters at 0.
    pub(super) fn polled(
        &self,
        (namespace, name): (&str, &str),
        labels: TriggerLabels<'_>,
        values: [f64; 3],
    ) {
        self.update(namespace, name, |entry| {
            trigger(entry, labels).polled = Some(values);
            entry.errors.get_or_insert(0.0);
        });
    }

    /// A failed query: counts against the trigger and the object.
    pub(super) fn failed(&self, (namespace, name): (&str, &str), labels: TriggerLabels<'_>) {
        self.update(namespace, name, |entry| {
            trigger(entry, labels).errors += 1.0;
            *entry.errors.get_or_insert(0.0) += 1.0;
        });
    }

    /// An error of the object that is not one trigger's.
    pub(super) fn object_error(&self, namespace: &str, name: &str) {
        self.update(namespace, name, |entry| {
            *entry.errors.get_or_insert(0.0) += 1.0
        });
    }

    pub(super) fn set_paused(&self, namespace: &str, name: &str, paused: bool) {
        let value = if paused { 1.0 } else { 0.0 };
        self.update(namespace, name, |entry| entry.paused = Some(value));
    }

    pub(super) fn set_loop_latency(&self, namespace: &str, name: &str, seconds: f64) {
        self.update(namespace, name, |entry| entry.loop_latency = Some(seconds));
    }

    pub(super) fn build(&self, namespace: &str, name: &str) {
        self.update(namespace, name, |entry| {
            *entry.builds.get_or_insert(0.0) += 1.0
        });
    }

    pub(super) fn builds(&self, namespace: &str, name: &str) -> u64 {
        let objects = self.lock();
        let builds = objects.get(namespace).and_then(|n| n.get(name)?.builds);
        builds.map_or(0, |b| b as u64)
    }

    pub(super) fn forget_builds(&self, namespace: &str, name: &str) {
        self.update(namespace, name, |entry| entry.builds = None);
    }

    /// Drop every KEDA series of the object (the build counter stays, as before).
    pub(super) fn forget(&self, namespace: &str, name: &str) {
        self.update(namespace, name, |entry| {
            *entry = Entry {
                builds: entry.builds,
                ..Entry::default()
            }
        });
    }

    /// A copy of the table taken under the lock (polls are not held up while a scrape
    /// renders), sorted by namespace and name.
    pub(super) fn snapshot(&self) -> Snapshot {
        let mut snapshot: Snapshot = self
            .lock()
            .iter()
            .flat_map(|(namespace, names)| {
                names
                    .iter()
                    .map(|(name, e)| (Arc::clone(namespace), Arc::clone(name), e.clone()))
            })
            .collect();
        snapshot.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        snapshot
    }

    /// The names of the families, for the scrape to place them among the registry's.
    pub(super) fn family_names() -> impl Iterator<Item = (&'static str, Family)> {
        FAMILIES
            .iter()
            .zip(ALL)
            .map(|((name, ..), family)| (*name, family))
    }
}

/// Every [`Family`], in [`FAMILIES`] order.
const ALL: [Family; 8] = [
    Family::ScalerValue,
    Family::ScalerLatency,
    Family::ScalerActive,
    Family::ScalerErrors,
    Family::ObjectErrors,
    Family::ObjectPaused,
    Family::LoopLatency,
    Family::ScalerBuilds,
];

/// The entry's series of the trigger `labels` names, created when missing.
fn trigger<'e>(entry: &'e mut Entry, labels: TriggerLabels<'_>) -> &'e mut Trigger {
    let position = entry.triggers.iter().position(|t| {
        t.index == labels.index
            && t.resource_type == labels.resource_type
            && *t.metric == *labels.metric
            && *t.scaler == *labels.scaler
    });
    let position = position.unwrap_or_else(|| {
        // Most objects have one trigger: no room for more until they come.
        entry.triggers.reserve_exact(1);
        entry.triggers.push(Trigger {
            metric: labels.metric.into(),
            scaler: labels.scaler.into(),
            index: labels.index,
            resource_type: labels.resource_type,
            polled: None,
            errors: 0.0,
        });
        entry.triggers.len() - 1
    });
    &mut entry.triggers[position]
}
