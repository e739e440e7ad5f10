//! The values the metrics adapter serves (design.md §4.1): what the last poll of each
//! ScaledObject found, per external metric, with fallback and scaling modifiers applied. The
//! adapter answers HPA reads from here and never queries a backend on that path.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use k8s_openapi::jiff::Timestamp;

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

/// `namespace/name` of a ScaledObject.
type ObjectKey = (String, String);

/// Latest metric records of every polled ScaledObject. Cheap to clone; shared by the loop
/// (writer) and the adapter (reader).
#[derive(Debug, Clone, Default)]
pub struct MetricStore {
    objects: Arc<RwLock<HashMap<ObjectKey, BTreeMap<String, MetricRecord>>>>,
}

impl MetricStore {
    /// Replace everything recorded for `namespace/name` with one poll's records.
    pub fn record_poll(
        &self,
        namespace: &str,
        name: &str,
        records: BTreeMap<String, MetricRecord>,
    ) {
        if let Ok(mut objects) = self.objects.write() {
            objects.insert((namespace.to_owned(), name.to_owned()), records);
        }
    }

    /// The record of `metric`, matched case-insensitively (client-go lowercases metric names).
    pub fn get(&self, namespace: &str, name: &str, metric: &str) -> Option<MetricRecord> {
        let objects = self.objects.read().ok()?;
        let records = objects.get(&(namespace.to_owned(), name.to_owned()))?;
        records
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(metric))
            .map(|(_, r)| r.clone())
    }

    /// Every record of `namespace/name`, by metric name.
    pub fn object(&self, namespace: &str, name: &str) -> BTreeMap<String, MetricRecord> {
        let objects = self.objects.read();
        objects
            .ok()
            .and_then(|o| o.get(&(namespace.to_owned(), name.to_owned())).cloned())
            .unwrap_or_default()
    }

    /// Forget `namespace/name` (deleted or paused).
    pub fn remove(&self, namespace: &str, name: &str) {
        if let Ok(mut objects) = self.objects.write() {
            objects.remove(&(namespace.to_owned(), name.to_owned()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: f64) -> MetricRecord {
        MetricRecord {
            value,
            active: value > 0.0,
            timestamp: Timestamp::UNIX_EPOCH,
            error: None,
        }
    }

    #[test]
    fn polls_replace_records_and_names_match_case_insensitively() {
        let store = MetricStore::default();
        store.record_poll(
            "shop",
            "orders",
            BTreeMap::from([("s0-rabbitmq-Orders".to_owned(), record(7.0))]),
        );
        assert_eq!(
            store
                .get("shop", "orders", "s0-rabbitmq-orders")
                .map(|r| r.value),
            Some(7.0)
        );
        store.record_poll(
            "shop",
            "orders",
            BTreeMap::from([("s0-rabbitmq-Orders".to_owned(), record(2.0))]),
        );
        assert_eq!(
            store
                .get("shop", "orders", "S0-RABBITMQ-ORDERS")
                .map(|r| r.value),
            Some(2.0)
        );
        assert!(store.get("shop", "other", "s0-rabbitmq-orders").is_none());
        assert_eq!(store.object("shop", "orders").len(), 1);
        store.remove("shop", "orders");
        assert!(store.get("shop", "orders", "s0-rabbitmq-orders").is_none());
    }
}
