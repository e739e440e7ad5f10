//! Kubernetes Events with KEDA's reasons (`reference/keda.md` §2.12), so `kubectl describe so`
//! and event-based alerting read as they do with KEDA. Events are best effort: a failure to
//! record one is logged and never fails the work it reports on.
//!
//! Why not kube-runtime's `Recorder`: it keeps every Event it published for six minutes (to
//! turn repeats into a series) and scans that whole cache on every publish, so a cold start
//! of 10,000 ScaledObjects (two Events each) held 20,000 Events in memory and did 10⁸ cache
//! visits. Here the same `events.k8s.io/v1` Events are written by a background worker fed
//! through a bounded queue (reconciles and polls never wait for the API server), and repeats
//! become a series through a small bounded map ([`MAX_SERIES`] entries of a few dozen bytes).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::warn;

use super::target::API_TIMEOUT;
use crate::crd::ScaledObject;

/// The component name on recorded Events (KEDA's, so existing filters keep matching).
pub const REPORTING_CONTROLLER: &str = "keda-operator";
/// Events waiting to be written; past it new Events are dropped.
const QUEUE: usize = 1024;
/// Events written at once.
const CONCURRENCY: usize = 8;
/// Repeats within this time extend the earlier Event's series (kube-runtime's value).
const SERIES_TTL: SignedDuration = SignedDuration::from_mins(6);
/// Most series remembered; past it the expired, then the oldest, are forgotten.
const MAX_SERIES: usize = 1024;

/// Normal or Warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Severity {
    Normal,
    Warning,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "Normal",
            Self::Warning => "Warning",
        }
    }
}

/// One Event to write.
struct Pending {
    severity: Severity,
    reason: String,
    note: String,
    regarding: ObjectReference,
}

/// A written Event that a repeat extends.
#[derive(Debug, Clone)]
struct Series {
    name: String,
    count: i32,
    last: Timestamp,
}

/// Records Events about ScaledObjects.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<Pending>,
    /// Events dropped on a full queue.
    dropped: Arc<AtomicU64>,
}

/// What the writer shares between its concurrent writes.
struct Writer {
    client: kube::Client,
    instance: String,
    series: Mutex<HashMap<u64, Series>>,
}

impl Events {
    /// A recorder reporting as [`REPORTING_CONTROLLER`] from this pod (`POD_NAME`, when set);
    /// its writer runs until every clone is dropped.
    pub fn new(client: kube::Client) -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = Arc::new(Writer {
            client,
            instance: std::env::var("POD_NAME").unwrap_or_else(|_| REPORTING_CONTROLLER.into()),
            series: Mutex::default(),
        });
        let events = tokio_stream_of(rx);
        tokio::spawn(events.for_each_concurrent(CONCURRENCY, move |pending| {
            let writer = Arc::clone(&writer);
            async move { writer.write(pending).await }
        }));
        Self {
            queue,
            dropped: Arc::default(),
        }
    }

    /// A Normal event.
    pub fn normal(&self, so: &ScaledObject, reason: &str, note: String) {
        self.publish(so, Severity::Normal, reason, note);
    }

    /// A Warning event.
    pub fn warning(&self, so: &ScaledObject, reason: &str, note: String) {
        self.publish(so, Severity::Warning, reason, note);
    }

    /// Queue the Event; never waits. A full queue drops it, as client-go's recorder does (KEDA's):
    /// waiting made every reconcile and poll as slow as the Event writes (a cold start of
    /// 10,000 objects took 200 s behind 20,000 queued Events).
    fn publish(&self, so: &ScaledObject, severity: Severity, reason: &str, note: String) {
        let pending = Pending {
            severity,
            reason: reason.to_owned(),
            note,
            regarding: so.object_ref(&()),
        };
        match self.queue.try_send(pending) {
            Ok(()) => {}
            Err(TrySendError::Closed(_)) => {
                warn!(reason, "the event writer stopped; event dropped")
            }
            Err(TrySendError::Full(_)) => {
                // One warning per thousand dropped: a burst must not flood the log too.
                if self
                    .dropped
                    .fetch_add(1, Ordering::Relaxed)
                    .is_multiple_of(1000)
                {
                    warn!(reason, queue = QUEUE, "event queue full; events dropped");
                }
            }
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(
    mut rx: mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Writer {
    async fn write(&self, pending: Pending) {
        let reason = pending.reason.clone();
        match tokio::time::timeout(API_TIMEOUT, self.write_unbounded(pending)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(reason, error = %error, "cannot record an event"),
            Err(_) => warn!(reason, timeout = ?API_TIMEOUT, "recording an event timed out"),
        }
    }

    /// Extend the series of an identical recent Event, or create a new one.
    async fn write_unbounded(&self, pending: Pending) -> kube::Result<()> {
        let namespace = pending
            .regarding
            .namespace
            .clone()
            .unwrap_or("default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let key = series_key(&pending);
        let now = Timestamp::now();
        if let Some(series) = self.repeat_of(key, now) {
            let patch = serde_json::json!({"series": EventSeries {
                count: series.count,
                last_observed_time: MicroTime(now),
            }});
            match api
                .patch(&series.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return Ok(()),
                // Gone (expired or deleted): record it afresh.
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error),
            }
        }
        let event = self.event(&pending, now);
        let name = event.metadata.name.clone().unwrap_or_default();
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, name, now);
        Ok(())
    }

    /// The series `key` continues, its count raised, when it was seen within the TTL.
    fn repeat_of(&self, key: u64, now: Timestamp) -> Option<Series> {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = series.get_mut(&key)?;
        if entry.last + SERIES_TTL <= now {
            series.remove(&key);
            return None;
        }
        entry.count += 1;
        entry.last = now;
        Some(entry.clone())
    }

    fn remember(&self, key: u64, name: String, now: Timestamp) {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if series.len() >= MAX_SERIES {
            series.retain(|_, s| s.last + SERIES_TTL > now);
        }
        if series.len() >= MAX_SERIES
            && let Some(oldest) = series.iter().min_by_key(|(_, s)| s.last).map(|(k, _)| *k)
        {
            series.remove(&oldest);
        }
        let first = Series {
            name,
            count: 1,
            last: now,
        };
        series.insert(key, first);
    }

    /// The Event kube-runtime's recorder would write.
    fn event(&self, pending: &Pending, now: Timestamp) -> Event {
        let regarding = &pending.regarding;
        let name = regarding.name.as_deref().unwrap_or(REPORTING_CONTROLLER);
        Event {
            action: Some(pending.reason.clone()),
            reason: Some(pending.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            note: Some(pending.note.clone()),
            metadata: ObjectMeta {
                namespace: regarding.namespace.clone(),
                name: Some(format!("{name}.{:x}", now.as_nanosecond())),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(REPORTING_CONTROLLER.to_owned()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(pending.severity.as_str().to_owned()),
            ..Event::default()
        }
    }
}

/// Identical Events (same object, severity, reason and note) share a series.
fn series_key(pending: &Pending) -> u64 {
    let mut hasher = DefaultHasher::new();
    let regarding = &pending.regarding;
    (pending.severity, &pending.reason, &pending.note).hash(&mut hasher);
    (&regarding.namespace, &regarding.name, &regarding.uid).hash(&mut hasher);
    hasher.finish()
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn so() -> ScaledObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
            "metadata": {"name": "orders", "namespace": "shop", "uid": "u-1"},
            "spec": {"scaleTargetRef": {"name": "orders"}, "triggers": []}
        }))
        .expect("a ScaledObject")
    }

    #[test]
    fn a_full_queue_drops_events_instead_of_waiting() {
        let (queue, mut rx) = mpsc::channel(1);
        let events = Events {
            queue,
            dropped: Arc::default(),
        };
        events.normal(&so(), "KEDAScalersStarted", "first".to_owned());
        events.warning(&so(), "KEDAScalerFailed", "second".to_owned());
        assert_eq!(events.dropped.load(Ordering::Relaxed), 1);
        let queued = rx.try_recv().expect("the first event is queued");
        assert_eq!(
            (queued.reason.as_str(), queued.note.as_str()),
            ("KEDAScalersStarted", "first")
        );
        assert_eq!(queued.regarding.name.as_deref(), Some("orders"));
        assert!(rx.try_recv().is_err(), "the second was dropped");
    }
}
