//! The values the metrics adapter serves (design.md §4.1): what the last poll of each
//! ScaledObject found, per external metric, with fallback and scaling modifiers applied. The
//! adapter answers HPA reads from here and never queries a backend on that path — unless a
//! trigger opted out of cached metrics (`useCachedMetrics: false`), in which case the poll loop
//! registers a [`LiveMetrics`] querier here and the adapter calls it (sharing concurrent calls).
//!
//! Besides the values, each object carries a [`Described`]: its scale target and labels, which
//! the custom metrics API needs to describe the same values on the target and on the
//! ScaledObject. Readers take a read lock, look up by `&str` without allocating keys, and clone
//! only what they return (records are small; descriptions and queriers are behind `Arc`).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use futures::future::BoxFuture;
use k8s_openapi::jiff::Timestamp;

use crate::crd::CompactMap;

/// One metric as the last poll left it.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricRecord {
    /// The value to serve (fallback's synthesized value while fallback applies).
    pub value: f64,
    /// Whether the metric was active.
    pub active: bool,
    /// When the poll read it.
    pub timestamp: Timestamp,
    /// Why the last read failed, when it did and no fallback covers it.
    pub error: Option<String>,
}

/// Queries one metric of one ScaledObject on demand, for triggers with
/// `useCachedMetrics: false`. The error text is served to clients: it must be secret-free.
pub trait LiveMetrics: Send + Sync {
    /// Read `metric` now.
    fn query(&self, metric: &str) -> BoxFuture<'static, Result<MetricRecord, String>>;
}

/// The object a ScaledObject scales, as the custom metrics API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedTarget {
    /// `apps/v1`; `v1` for core kinds.
    pub api_version: String,
    /// `Deployment`.
    pub kind: String,
    /// Group-qualified plural as `GroupResource.String()`: `deployments.apps`, `pods`.
    pub resource: String,
    /// Target name.
    pub name: String,
}

/// What the custom metrics API needs to know about a ScaledObject besides its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Its scale target.
    pub target: DescribedTarget,
    /// The ScaledObject's labels (wildcard reads filter on them), but for its name label,
    /// which reads answer from its name. A sorted slice, not a `BTreeMap`: one is kept per
    /// object.
    pub labels: CompactMap<String>,
}

/// Everything kept about one ScaledObject.
#[derive(Default)]
struct Entry {
    /// By metric name, sorted: a boxed slice, not a map, because an object has one metric or
    /// a few, and a `BTreeMap` node holds room for eleven (~900 bytes for one record).
    records: Box<[(String, MetricRecord)]>,
    described: Option<Arc<Described>>,
    /// Metric name → querier, for metrics read live.
    live: BTreeMap<String, Arc<dyn LiveMetrics>>,
}

/// One metric of one ScaledObject, as a read finds it.
#[derive(Clone)]
pub struct MetricHit {
    /// ScaledObject name.
    pub object: String,
    /// The metric name as the poll loop recorded it.
    pub metric: String,
    /// The last poll's record, if any.
    pub record: Option<MetricRecord>,
    /// The object's description, once [`MetricStore::describe`] was called.
    pub described: Option<Arc<Described>>,
    /// The live querier, when the metric is read live.
    pub live: Option<Arc<dyn LiveMetrics>>,
}

impl std::fmt::Debug for MetricHit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricHit")
            .field("object", &self.object)
            .field("metric", &self.metric)
            .field("record", &self.record)
            .field("described", &self.described)
            .field("live", &self.live.is_some())
            .finish()
    }
}

/// Namespace → ScaledObject name → entry; ordered so answers list objects by name.
type Objects = BTreeMap<String, BTreeMap<String, Entry>>;

/// Latest metric records of every polled ScaledObject. Cheap to clone; shared by the loop
/// (writer) and the adapter (reader).
#[derive(Clone, Default)]
pub struct MetricStore {
    objects: Arc<RwLock<Objects>>,
    /// Bumped on every change to names, descriptions or queriers (not on value updates), so
    /// discovery documents can be cached until it moves.
    shape_generation: Arc<AtomicU64>,
}

impl std::fmt::Debug for MetricStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricStore")
            .field("shape_generation", &self.shape_generation())
            .finish_non_exhaustive()
    }
}

impl MetricStore {
    /// Replace everything recorded for `namespace/name` with one poll's records; the
    /// description and live queriers stay.
    pub fn record_poll(
        &self,
        namespace: &str,
        name: &str,
        records: BTreeMap<String, MetricRecord>,
    ) {
        self.write(|objects| {
            let Some(entry) = entry(objects, namespace, name) else {
                return false;
            };
            let same_names = entry.records.iter().map(|(k, _)| k).eq(records.keys());
            if same_names {
                // The usual poll: new values under the names already kept, nothing allocated.
                for ((_, kept), (_, record)) in entry.records.iter_mut().zip(records) {
                    *kept = record;
                }
            } else {
                entry.records = records.into_iter().collect();
            }
            !same_names
        });
    }

    /// Record the scale target and labels of `namespace/name` (custom metrics API).
    pub fn describe(&self, namespace: &str, name: &str, described: Described) {
        self.write(|objects| {
            let Some(entry) = entry(objects, namespace, name) else {
                return false;
            };
            let changed = entry.described.as_deref() != Some(&described);
            if changed {
                entry.described = Some(Arc::new(described));
            }
            changed
        });
    }

    /// Read `metric` of `namespace/name` live through `querier` from now on.
    pub fn set_live(
        &self,
        namespace: &str,
        name: &str,
        metric: &str,
        querier: Arc<dyn LiveMetrics>,
    ) {
        self.write(|objects| {
            let Some(entry) = entry(objects, namespace, name) else {
                return false;
            };
            entry.live.insert(metric.to_owned(), querier);
            true
        });
    }

    /// Serve `metric` of `namespace/name` from the poll's records again.
    pub fn clear_live(&self, namespace: &str, name: &str, metric: &str) {
        self.write(|objects| {
            objects
                .get_mut(namespace)
                .and_then(|names| names.get_mut(name))
                .and_then(|entry| entry.live.remove(metric))
                .is_some()
        });
    }

    /// The record of `metric`, matched case-insensitively (client-go lowercases metric names).
    pub fn get(&self, namespace: &str, name: &str, metric: &str) -> Option<MetricRecord> {
        let objects = self.read();
        let entry = objects.get(namespace)?.get(name)?;
        find_record(&entry.records, metric).map(|(_, r)| r.clone())
    }

    /// Every record of `namespace/name`, by metric name.
    pub fn object(&self, namespace: &str, name: &str) -> BTreeMap<String, MetricRecord> {
        self.read()
            .get(namespace)
            .and_then(|names| names.get(name))
            .map(|e| e.records.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Forget `namespace/name` (deleted or paused): records, description and live queriers.
    pub fn remove(&self, namespace: &str, name: &str) {
        self.write(|objects| {
            let Some(names) = objects.get_mut(namespace) else {
                return false;
            };
            let removed = names.remove(name).is_some();
            if names.is_empty() {
                objects.remove(namespace);
            }
            removed
        });
    }

    /// `metric` (case-insensitive) of `namespace/name`, when recorded or read live.
    pub fn hit(&self, namespace: &str, name: &str, metric: &str) -> Option<MetricHit> {
        let objects = self.read();
        let entry = objects.get(namespace)?.get(name)?;
        make_hit(name, entry, metric)
    }

    /// `metric` (case-insensitive) of every ScaledObject in `namespace` that has it and that
    /// `keep(name, description)` accepts, ordered by object name.
    pub fn hits_in_namespace(
        &self,
        namespace: &str,
        metric: &str,
        mut keep: impl FnMut(&str, Option<&Described>) -> bool,
    ) -> Vec<MetricHit> {
        let objects = self.read();
        let Some(names) = objects.get(namespace) else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|(name, entry)| keep(name, entry.described.as_deref()))
            .filter_map(|(name, entry)| make_hit(name, entry, metric))
            .collect()
    }

    /// Names of the ScaledObjects known in `namespace`, sorted.
    pub fn objects_in_namespace(&self, namespace: &str) -> Vec<String> {
        self.read()
            .get(namespace)
            .map(|names| names.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Every metric name known in any namespace, lowercased (as clients request them), sorted.
    pub fn metric_names(&self) -> BTreeSet<String> {
        let mut names = BTreeSet::new();
        self.for_each_entry(|_, entry| {
            for metric in entry
                .records
                .iter()
                .map(|(k, _)| k)
                .chain(entry.live.keys())
            {
                names.insert(metric.to_ascii_lowercase());
            }
        });
        names
    }

    /// `(resource, metric)` pairs the custom metrics API describes: each metric on its
    /// object's scale target resource (once described) and on `scaledobjects.keda.sh`.
    pub fn described_resources(&self, scaled_objects: &str) -> BTreeSet<(String, String)> {
        let mut pairs = BTreeSet::new();
        self.for_each_entry(|_, entry| {
            for metric in entry
                .records
                .iter()
                .map(|(k, _)| k)
                .chain(entry.live.keys())
            {
                let metric = metric.to_ascii_lowercase();
                if let Some(described) = &entry.described {
                    let resource = described.target.resource.to_ascii_lowercase();
                    pairs.insert((resource, metric.clone()));
                }
                pairs.insert((scaled_objects.to_owned(), metric));
            }
        });
        pairs
    }

    /// Changes whenever metric names, descriptions or queriers change.
    pub fn shape_generation(&self) -> u64 {
        self.shape_generation.load(Ordering::Acquire)
    }

    fn for_each_entry(&self, mut visit: impl FnMut(&str, &Entry)) {
        for names in self.read().values() {
            for (name, entry) in names {
                visit(name, entry);
            }
        }
    }

    /// The read lock. A poisoned lock means a writer panicked mid-update; the maps are still
    /// consistent (every update is a single insert or remove), so keep serving.
    fn read(&self) -> RwLockReadGuard<'_, Objects> {
        self.objects.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `change` under the write lock; it says whether the shape changed.
    fn write(&self, change: impl FnOnce(&mut Objects) -> bool) {
        // Poisoning is harmless here, see `read`.
        let mut objects = self.objects.write().unwrap_or_else(PoisonError::into_inner);
        if change(&mut objects) {
            self.shape_generation.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The entry of `namespace/name`, created when missing. Looks up before inserting so the
/// steady state (entry exists) allocates no keys.
fn entry<'a>(objects: &'a mut Objects, namespace: &str, name: &str) -> Option<&'a mut Entry> {
    if !objects.contains_key(namespace) {
        objects.insert(namespace.to_owned(), BTreeMap::new());
    }
    let names = objects.get_mut(namespace)?;
    if !names.contains_key(name) {
        names.insert(name.to_owned(), Entry::default());
    }
    names.get_mut(name)
}

fn find_ignore_case<'a, V>(map: &'a BTreeMap<String, V>, key: &str) -> Option<(&'a String, &'a V)> {
    map.get_key_value(key)
        .or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
}

/// [`find_ignore_case`] over the sorted records.
fn find_record<'a>(
    records: &'a [(String, MetricRecord)],
    key: &str,
) -> Option<(&'a String, &'a MetricRecord)> {
    let found = match records.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
        Ok(at) => Some(&records[at]),
        Err(_) => records.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)),
    };
    found.map(|(k, r)| (k, r))
}

fn make_hit(name: &str, entry: &Entry, metric: &str) -> Option<MetricHit> {
    let record = find_record(&entry.records, metric);
    let live = find_ignore_case(&entry.live, metric);
    let stored_name = record.map(|(k, _)| k).or(live.map(|(k, _)| k))?;
    Some(MetricHit {
        object: name.to_owned(),
        metric: stored_name.clone(),
        record: record.map(|(_, r)| r.clone()),
        described: entry.described.clone(),
        live: live.map(|(_, q)| Arc::clone(q)),
    })
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
