//! A small event recorder writing `core/v1` Events like client-go's: one Event per distinct
//! (object, type, reason, message), later repeats bump `count` and `lastTimestamp`
//! (`spec/kubernetes.md` §5.9, §3.8). `kubectl describe hpa` reads these.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::store::{GroupResource, Store, WriteOptions, meta};

/// The core `events` resource.
fn events() -> GroupResource {
    GroupResource::new("", "events")
}

type Key = (String, bool, String, String);

/// Distinct events remembered for aggregation before the memory is reset.
const MAX_REMEMBERED: usize = 4096;

/// Records Events for one controller component.
#[derive(Debug)]
pub struct EventRecorder {
    component: &'static str,
    /// Event name per deduplication key.
    seen: Mutex<HashMap<Key, String>>,
}

/// Process-wide: recorders of different controllers name events after the same objects
/// (a Deployment and its HPA are often both `web`) within one instant of virtual time.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);

impl EventRecorder {
    /// A recorder reporting as `component` (e.g. `horizontal-pod-autoscaler`).
    pub fn new(component: &'static str) -> Self {
        Self {
            component,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Records an event about `involved`. Failures are logged, never returned: events are
    /// best-effort in Kubernetes too.
    pub fn record(
        &self,
        store: &Store,
        involved: &Value,
        warning: bool,
        reason: &str,
        message: &str,
    ) {
        let uid = meta::uid(involved).unwrap_or_default().to_owned();
        let key = (uid, warning, reason.to_owned(), message.to_owned());
        let existing = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        let ns = meta::namespace(involved).unwrap_or("default");
        if let Some(name) = existing
            && let Ok(mut event) = store.get(&events(), Some(ns), &name)
        {
            event["count"] = json!(event["count"].as_u64().unwrap_or(1) + 1);
            event["lastTimestamp"] = json!(store.now_string());
            if let Err(error) = store.update(&events(), event, &WriteOptions::default()) {
                tracing::debug!(%error, reason, "event update failed");
            }
            return;
        }
        let name = self.event_name(store, involved);
        match store.create(
            &events(),
            self.event(store, involved, &name, warning, reason, message),
            &WriteOptions::default(),
        ) {
            Ok(_) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                // Messages naming pods are all distinct: bound the memory of a long `dev` run.
                if seen.len() >= MAX_REMEMBERED {
                    seen.clear();
                }
                seen.insert(key, name);
            }
            Err(error) => tracing::debug!(%error, reason, "event creation failed"),
        }
    }

    /// `<object>.<hex unix nanos>`, made unique within an instant of virtual time.
    fn event_name(&self, store: &Store, involved: &Value) -> String {
        let nanos = store.clock().now().as_nanosecond();
        let seq = i128::from(SEQUENCE.fetch_add(1, Ordering::Relaxed));
        format!("{}.{:x}", meta::name(involved), nanos.saturating_add(seq))
    }

    fn event(
        &self,
        store: &Store,
        involved: &Value,
        name: &str,
        warning: bool,
        reason: &str,
        message: &str,
    ) -> Value {
        let now = store.now_string();
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta::namespace(involved).unwrap_or("default")},
            "involvedObject": {
                "kind": involved["kind"], "namespace": meta::namespace(involved),
                "name": meta::name(involved), "uid": meta::uid(involved),
                "apiVersion": involved["apiVersion"], "resourceVersion": meta::resource_version(involved),
            },
            "reason": reason, "message": message,
            "source": {"component": self.component},
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
            "type": if warning { "Warning" } else { "Normal" },
            "eventTime": null,
            "reportingComponent": self.component, "reportingInstance": "",
        })
    }
}
